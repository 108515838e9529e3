"""The pure parts of agentkube.testing.kubelet: variable expansion, the downward API, quantities,
mount paths, termination messages, scheduling and a container's argv."""

from __future__ import annotations

import contextlib
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentkube.testing.kubelet import (
    MESSAGE_BYTES,
    MESSAGE_LINES,
    _ConfigError,
    expand,
    field_value,
    image_entrypoint,
    log_tail,
    node_capacity,
    quantity,
    remap,
    resource_value,
    schedulable,
)

IMAGE = "ghcr.io/agentkube/agentkube:0.3.0"
IMAGES = {IMAGE: ["/venv/bin/agentkube"]}


def reference_expand(text: str, env: dict[str, str]) -> str:
    """The rule as the Kubernetes documentation states it, read one character at a time: ``$$`` is a
    ``$``; ``$(`` up to the next ``)`` is a reference, replaced when ``env`` has the name and kept as
    written when not; any other ``$`` is itself."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i) and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2 : end]
            out.append(env.get(name, text[i : end + 1]))
            i = end + 1
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


# ------------------------------------------------------------------------------------------ expand


def test_expand_replaces_known_references_and_keeps_unknown_ones_as_written() -> None:
    env = {"GREETING": "hello", "NAME": "world"}
    assert expand("$(GREETING), $(NAME)!", env) == "hello, world!"
    assert expand("$(MISSING) and $(GREETING)", env) == "$(MISSING) and hello"
    assert expand("no references", env) == "no references"


def test_expand_reads_double_dollar_as_one_literal_dollar_so_an_escaped_reference_stays() -> None:
    env = {"A": "x"}
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$$$(A)", env) == "$x"
    assert expand("cost: $$5", env) == "cost: $5"
    assert expand("$A $ end$", env) == "$A $ end$"


def test_expand_leaves_an_unclosed_reference_alone() -> None:
    assert expand("$(A", {"A": "x"}) == "$(A"
    assert expand("$(A $(A)", {"A": "x"}) == "$(A $(A)"


def test_expand_reads_a_reference_up_to_the_first_closing_parenthesis() -> None:
    # "A$(B" is the name the kubelet looks up; no environment has it, so nothing changes, even
    # though B alone is known.
    assert expand("$(A$(B))", {"B": "x"}) == "$(A$(B))"
    assert expand("$($$)", {}) == "$($$)"


def test_expand_resolves_any_name_an_environment_may_hold() -> None:
    # Since Kubernetes 1.30 an environment variable name is any printable ASCII but "=".
    env = {"1ST": "one", "my.var-x": "two", "": "empty"}
    assert expand("$(1ST) $(my.var-x)", env) == "one two"
    assert expand("$()", env) == "empty"


@given(st.text(), st.dictionaries(st.text(), st.text()))
def test_expand_never_raises_and_agrees_with_the_documented_rule(text: str, env: dict[str, str]) -> None:
    assert expand(text, env) == reference_expand(text, env)


@given(
    st.text(alphabet="$()AB x", max_size=30),
    st.dictionaries(st.sampled_from(["A", "B", "A$(B", "", "$"]), st.text(alphabet="$()ab", max_size=5)),
)
def test_expand_agrees_with_the_documented_rule_on_dollar_heavy_text(text: str, env: dict[str, str]) -> None:
    assert expand(text, env) == reference_expand(text, env)


@given(st.text(), st.dictionaries(st.text(), st.text()))
def test_an_escaped_value_expands_back_to_itself(text: str, env: dict[str, str]) -> None:
    assert expand(text.replace("$", "$$"), env) == text


@given(st.text().filter(lambda t: "$" not in t), st.dictionaries(st.text(), st.text()))
def test_text_without_a_dollar_is_unchanged(text: str, env: dict[str, str]) -> None:
    assert expand(text, env) == text


# ------------------------------------------------------------------------------------- field_value

POD: dict[str, Any] = {
    "metadata": {
        "name": "web-0",
        "namespace": "team-a",
        "uid": "1234-abcd",
        "labels": {"app": "web", "app.kubernetes.io/name": "mcp"},
        "annotations": {"note": "it's here"},
    },
    "spec": {"nodeName": "agentkube-local", "serviceAccountName": "proxy"},
    "status": {
        "podIP": "10.244.0.7",
        "podIPs": [{"ip": "10.244.0.7"}, {"ip": "fd00::7"}],
        "hostIP": "10.244.0.1",
        "hostIPs": [{"ip": "10.244.0.1"}],
    },
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "web-0"),
        ("metadata.namespace", "team-a"),
        ("metadata.uid", "1234-abcd"),
        ("metadata.labels['app']", "web"),
        ("metadata.labels['app.kubernetes.io/name']", "mcp"),
        ("metadata.labels['absent']", ""),
        ("metadata.annotations['note']", "it's here"),
        ("spec.nodeName", "agentkube-local"),
        ("spec.serviceAccountName", "proxy"),
        ("status.podIP", "10.244.0.7"),
        ("status.podIPs", "10.244.0.7,fd00::7"),
        ("status.hostIP", "10.244.0.1"),
        ("status.hostIPs", "10.244.0.1"),
    ],
)
def test_field_value_reads_the_downward_api_fields(path: str, value: str) -> None:
    assert field_value(POD, path) == value


def test_field_value_of_a_pod_without_status_is_empty() -> None:
    assert field_value({"metadata": {"name": "p"}}, "status.podIP") == ""
    assert field_value({}, "status.podIPs") == ""
    assert field_value({}, "metadata.labels['x']") == ""


@pytest.mark.parametrize("path", ["metadata.labels", "metadata.generation", "spec.containers", ""])
def test_field_value_refuses_a_path_the_downward_api_does_not_offer_and_names_it(path: str) -> None:
    with pytest.raises(_ConfigError, match=f"unsupported fieldPath: {path}$"):
        field_value(POD, path)


# ---------------------------------------------------------------------------------------- quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", Decimal(2)),
        (2, Decimal(2)),
        ("500m", Decimal("0.5")),
        ("0.1", Decimal("0.1")),
        ("100n", Decimal("1e-7")),
        ("250u", Decimal("0.00025")),
        ("128Mi", Decimal(128 * 2**20)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("1Pi", Decimal(2**50)),
        ("2Ei", Decimal(2**61)),
        ("1k", Decimal(1000)),
        ("1T", Decimal(10**12)),
        ("3P", Decimal(3 * 10**15)),
        ("1E", Decimal(10**18)),
        ("1e3", Decimal(1000)),
        ("12E-1", Decimal("1.2")),
        ("+1", Decimal(1)),
        (" 64Mi ", Decimal(64 * 2**20)),
    ],
)
def test_quantity_reads_every_suffix_of_the_quantity_grammar_exactly(text: str | int, value: Decimal) -> None:
    assert quantity(text) == value


@pytest.mark.parametrize("text", ["", "1..2", ".", "abc", "1Q", "1 Mi", "Mi", "1mi", "0x10"])
def test_quantity_refuses_what_is_not_a_quantity_with_a_config_error(text: str) -> None:
    with pytest.raises(_ConfigError, match="invalid quantity"):
        quantity(text)


@given(st.text(max_size=20))
def test_quantity_raises_nothing_but_a_config_error(text: str) -> None:
    with contextlib.suppress(_ConfigError):
        quantity(text)


# ---------------------------------------------------------------------------------- resource_value


def _container(**resources: dict[str, str]) -> dict[str, Any]:
    return {"name": "c", "image": IMAGE, "resources": resources}


@pytest.mark.parametrize(
    ("resources", "ref", "value"),
    [
        ({"limits": {"cpu": "250m"}}, {"resource": "limits.cpu"}, "1"),
        ({"limits": {"cpu": "250m"}}, {"resource": "limits.cpu", "divisor": "1m"}, "250"),
        ({"limits": {"cpu": "1.1"}}, {"resource": "limits.cpu", "divisor": "1m"}, "1100"),
        ({"limits": {"cpu": "0.1"}}, {"resource": "limits.cpu", "divisor": "1m"}, "100"),
        ({"limits": {"cpu": "1500u"}}, {"resource": "limits.cpu", "divisor": "1m"}, "2"),
        ({"requests": {"cpu": "2"}}, {"resource": "requests.cpu"}, "2"),
        ({"limits": {"memory": "128Mi"}}, {"resource": "limits.memory", "divisor": "1Mi"}, "128"),
        ({"limits": {"memory": "128Mi"}}, {"resource": "limits.memory"}, str(128 * 2**20)),
        ({"limits": {"memory": "1.5Gi"}}, {"resource": "limits.memory", "divisor": "1Gi"}, "2"),
        ({"requests": {"memory": "1M"}}, {"resource": "requests.memory", "divisor": "1Mi"}, "1"),
        ({"limits": {"memory": "3T"}}, {"resource": "limits.memory", "divisor": "1T"}, "3"),
        ({"limits": {"memory": "1Pi"}}, {"resource": "limits.memory", "divisor": "1Ti"}, "1024"),
        (
            {"limits": {"ephemeral-storage": "2Gi"}},
            {"resource": "limits.ephemeral-storage", "divisor": "1Mi"},
            "2048",
        ),
    ],
)
def test_resource_value_rounds_up_in_its_divisor(
    resources: dict[str, dict[str, str]], ref: dict[str, str], value: str
) -> None:
    assert resource_value(_container(**resources), ref) == value


def test_an_unset_limit_is_the_capacity_the_node_reports() -> None:
    capacity = node_capacity()
    assert resource_value({}, {"resource": "limits.cpu"}) == str(os.cpu_count() or 1) == capacity["cpu"]
    memory_ki = int(capacity["memory"].removesuffix("Ki"))
    assert resource_value({}, {"resource": "limits.memory", "divisor": "1Ki"}) == str(memory_ki)
    assert resource_value({}, {"resource": "limits.memory"}) == str(memory_ki * 1024)
    assert resource_value({}, {"resource": "limits.ephemeral-storage", "divisor": "1Gi"}) == "100"
    # A limit on another resource leaves this one at the capacity.
    assert resource_value(_container(limits={"memory": "1Gi"}), {"resource": "limits.cpu"}) == capacity["cpu"]


@pytest.mark.parametrize("resource", ["requests.cpu", "requests.memory", "requests.ephemeral-storage"])
def test_an_unset_request_is_zero(resource: str) -> None:
    assert resource_value(_container(limits={"cpu": "1", "memory": "1Gi"}), {"resource": resource}) == "0"


@pytest.mark.parametrize("resource", ["limits.nvidia.com/gpu", "requests.pods", "cpu", "limits", ""])
def test_resource_value_refuses_a_resource_it_does_not_offer(resource: str) -> None:
    with pytest.raises(_ConfigError, match="unsupported resource"):
        resource_value(_container(limits={"cpu": "1"}), {"resource": resource})


@pytest.mark.parametrize("divisor", ["0", "abc"])
def test_resource_value_refuses_a_divisor_that_divides_nothing(divisor: str) -> None:
    with pytest.raises(_ConfigError, match="invalid"):
        resource_value(_container(limits={"cpu": "1"}), {"resource": "limits.cpu", "divisor": divisor})


@given(st.integers(min_value=0, max_value=10**9))
def test_millicores_round_up_to_whole_cores_and_stay_exact_in_millicores(millicores: int) -> None:
    container = _container(limits={"cpu": f"{millicores}m"})
    assert resource_value(container, {"resource": "limits.cpu", "divisor": "1m"}) == str(millicores)
    assert resource_value(container, {"resource": "limits.cpu"}) == str(-(-millicores // 1000))


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=999))
def test_decimal_cores_in_millicores_are_exact(whole: int, milli: int) -> None:
    container = _container(limits={"cpu": f"{whole}.{milli:03d}"})
    assert resource_value(container, {"resource": "limits.cpu", "divisor": "1m"}) == str(whole * 1000 + milli)


# ------------------------------------------------------------------------------------------- remap

CONFIG, TMP, ROOT_DIR = Path("/pod/v/config"), Path("/pod/v/tmp"), Path("/pod/v/root")


def test_remap_replaces_an_exact_mount_path_and_a_path_under_it() -> None:
    mounts = [("/etc/config", CONFIG)]
    assert remap("/etc/config", mounts) == str(CONFIG)
    assert remap("/etc/config/app.yaml", mounts) == f"{CONFIG}/app.yaml"
    assert remap("/etc/config/", mounts) == f"{CONFIG}/"


def test_remap_leaves_a_path_that_only_shares_a_prefix_of_the_name() -> None:
    mounts = [("/tmp", TMP), ("/etc/config", CONFIG)]
    assert remap("/tmpfoo", mounts) == "/tmpfoo"
    assert remap("/tmpfoo/x", mounts) == "/tmpfoo/x"
    assert remap("/etc/configs/app.yaml", mounts) == "/etc/configs/app.yaml"
    assert remap("/etc", mounts) == "/etc"


def test_remap_replaces_only_a_leading_mount_path() -> None:
    mounts = [("/etc/config", CONFIG)]
    assert remap("--config=/etc/config/app.yaml", mounts) == "--config=/etc/config/app.yaml"
    assert remap("etc/config/app.yaml", mounts) == "etc/config/app.yaml"
    assert remap("", mounts) == ""


@pytest.mark.parametrize("order", [1, -1])
def test_remap_takes_the_longest_mount_whatever_the_order(order: int) -> None:
    nested = Path("/pod/v/nested")
    mounts = [("/etc", ROOT_DIR), ("/etc/config", CONFIG), ("/etc/config/nested", nested)][::order]
    assert remap("/etc/config/nested/x", mounts) == f"{nested}/x"
    assert remap("/etc/config/app.yaml", mounts) == f"{CONFIG}/app.yaml"
    assert remap("/etc/other", mounts) == f"{ROOT_DIR}/other"
    assert remap("/etc", mounts) == str(ROOT_DIR)


def test_remap_reads_a_mount_path_given_with_a_trailing_slash() -> None:
    mounts = [("/data/", CONFIG)]
    assert remap("/data", mounts) == str(CONFIG)
    assert remap("/data/", mounts) == f"{CONFIG}/"
    assert remap("/data/x", mounts) == f"{CONFIG}/x"
    assert remap("/database", mounts) == "/database"


def test_a_mount_at_the_root_takes_every_absolute_path_and_the_longer_mount_still_wins() -> None:
    mounts = [("/", ROOT_DIR), ("/tmp", TMP)]
    assert remap("/etc/x", mounts) == f"{ROOT_DIR}/etc/x"
    assert remap("/tmp/x", mounts) == f"{TMP}/x"
    assert remap("relative", mounts) == "relative"


@given(st.text())
def test_remap_without_mounts_or_with_unrelated_ones_changes_nothing(value: str) -> None:
    assert remap(value, []) == value
    if not value.startswith("/etc/config/") and value not in ("/etc/config", "/etc/config/"):
        assert remap(value, [("/etc/config", CONFIG)]) == value


# ---------------------------------------------------------------------------------------- log_tail


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "c.0.log"
    lines = [f"line {i}" for i in range(MESSAGE_LINES + 20)]
    log.write_text("\n".join(lines) + "\n")
    assert log_tail(log) == "\n".join(lines[-MESSAGE_LINES:])


def test_log_tail_keeps_at_most_the_last_bytes_of_those_lines(tmp_path: Path) -> None:
    log = tmp_path / "c.0.log"
    lines = [f"{i:03d}" + "x" * 496 for i in range(20)]
    log.write_text("\n".join(lines))
    tail = log_tail(log)
    assert len(tail.encode()) == MESSAGE_BYTES
    assert "\n".join(lines).endswith(tail)
    assert tail.endswith(lines[-1])


def test_log_tail_of_a_large_log_is_its_end(tmp_path: Path) -> None:
    log = tmp_path / "c.0.log"
    with log.open("w") as f:
        for i in range(20_000):
            f.write(f"noise {i}\n")
        f.write("config.yaml: upstreams[0].url: not an http(s) URL\n")
    tail = log_tail(log)
    assert tail.endswith("config.yaml: upstreams[0].url: not an http(s) URL")
    assert len(tail.splitlines()) == MESSAGE_LINES


def test_log_tail_cuts_multibyte_text_to_whole_characters_within_the_limit(tmp_path: Path) -> None:
    log = tmp_path / "c.0.log"
    log.write_text("é" * 3000)
    tail = log_tail(log)
    assert set(tail) == {"é"} and len(tail.encode()) <= MESSAGE_BYTES


def test_log_tail_of_a_missing_or_empty_log_is_empty(tmp_path: Path) -> None:
    assert log_tail(tmp_path / "absent.log") == ""
    (tmp_path / "empty.log").write_bytes(b"")
    assert log_tail(tmp_path / "empty.log") == ""


# ------------------------------------------------------------------------------------- schedulable

LABELS = {"kubernetes.io/hostname": "agentkube-local", "kubernetes.io/os": "linux"}


def _pod(*images: str, init: tuple[str, ...] = (), selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}
    if init:
        spec["initContainers"] = [{"name": f"init{i}", "image": im} for i, im in enumerate(init)]
    if selector is not None:
        spec["nodeSelector"] = selector
    return {"metadata": {"name": "p", "namespace": "n"}, "spec": spec}


def test_a_pod_of_the_nodes_images_is_schedulable() -> None:
    assert schedulable(_pod(IMAGE, IMAGE), LABELS, IMAGES) == ""
    assert schedulable(_pod(IMAGE, selector={"kubernetes.io/os": "linux"}), LABELS, IMAGES) == ""


def test_a_container_of_another_image_is_named_with_its_image() -> None:
    why = schedulable(_pod(IMAGE, "nginx:1.27"), LABELS, IMAGES)
    assert why == f"the local node runs only the images ['{IMAGE}']; container c1 uses 'nginx:1.27'"


def test_an_init_container_of_another_image_makes_the_pod_unschedulable() -> None:
    why = schedulable(_pod(IMAGE, init=("busybox:1",)), LABELS, IMAGES)
    assert "container init0 uses 'busybox:1'" in why


def test_a_node_selector_the_node_does_not_match_is_named() -> None:
    why = schedulable(_pod(IMAGE, selector={"disktype": "ssd"}), LABELS, IMAGES)
    assert why == "nodeSelector disktype=ssd does not match the local node"
    assert schedulable(_pod(IMAGE, selector={"kubernetes.io/os": "windows"}), LABELS, IMAGES)


# -------------------------------------------------------------------------------- image_entrypoint


def test_without_a_command_the_images_entrypoint_runs_with_the_args() -> None:
    args = ["mcp-proxy", "--config=/etc/agentkube/config.yaml"]
    container = {"name": "proxy", "image": IMAGE, "args": args}
    assert image_entrypoint(container, IMAGES) == [
        "/venv/bin/agentkube",
        "mcp-proxy",
        "--config=/etc/agentkube/config.yaml",
    ]
    assert image_entrypoint({"name": "proxy", "image": IMAGE}, IMAGES) == ["/venv/bin/agentkube"]
    no_command = {"name": "proxy", "image": IMAGE, "command": []}
    assert image_entrypoint(no_command, IMAGES) == ["/venv/bin/agentkube"]


def test_a_command_replaces_the_entrypoint() -> None:
    container = {"name": "c", "image": IMAGE, "command": ["python", "-c"], "args": ["print(1)"]}
    assert image_entrypoint(container, IMAGES) == ["python", "-c", "print(1)"]
    assert image_entrypoint({**container, "image": "elsewhere:1"}, IMAGES) == ["python", "-c", "print(1)"]


def test_an_image_the_node_does_not_run_and_no_command_is_a_config_error_naming_both() -> None:
    with pytest.raises(_ConfigError, match=r"container web: image 'nginx:1' is not one the local node runs"):
        image_entrypoint({"name": "web", "image": "nginx:1"}, IMAGES)


def test_image_entrypoint_does_not_share_the_images_list() -> None:
    argv = image_entrypoint({"name": "c", "image": IMAGE, "args": ["x"]}, IMAGES)
    argv.append("y")
    assert IMAGES[IMAGE] == ["/venv/bin/agentkube"]
