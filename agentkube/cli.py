"""The ``agentkube`` command.

    agentkube manager [flags]   run the operator (controllers, leader election, probes, metrics)
    agentkube crds [--output-dir DIR]
                                print the CustomResourceDefinitions (or write one file per CRD)
    agentkube mcp-proxy --config PATH
                                serve an MCP proxy (what an MCP's Deployment runs)
    agentkube llm-gateway --config PATH
                                serve an LLM gateway (what an LLMGateway's Deployment runs)

``agentkube manager --local-control-plane=auto`` (what ``make run`` does) talks to the current
kubeconfig when a cluster answers there, and otherwise starts a local cluster with
``agentkube.testing``: etcd, kube-apiserver, kube-controller-manager and the local node that runs the
data-plane pods as local processes. It installs the CRDs, prints the kubeconfig to use with kubectl
and, as Services appear, the local address of each, and runs the manager against it until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from agentkube.controllers import OperatorOptions

if TYPE_CHECKING:
    from agentkube.testing import ControlPlane

__all__ = ["main"]

IMAGE_REPOSITORY = "ghcr.io/agentkube/agentkube"
DEFAULT_DATAPLANE_IMAGE = f"{IMAGE_REPOSITORY}:{version('agentkube')}"
"""The image of this release: the operator's own, which also carries the data-plane programs."""


def _manager_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("manager", help="run the operator")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    p.add_argument("--leader-elect", action="store_true", help="elect a leader through a Lease (default off)")
    p.add_argument(
        "--leader-election-id", default="agentkube-leader", help="Lease name (default %(default)s)"
    )
    p.add_argument(
        "--leader-election-namespace",
        default=None,
        help="Lease namespace (default: the pod's namespace, else 'default')",
    )
    p.add_argument(
        "--metrics-bind-address",
        default=":8080",
        help="address of /metrics; '0' disables (default %(default)s)",
    )
    p.add_argument(
        "--health-probe-bind-address",
        default=":8081",
        help="address of /healthz, /livez and /readyz; '0' disables (default %(default)s)",
    )
    p.add_argument("--namespace", default=None, help="watch only this namespace (default: all)")
    p.add_argument(
        "--operator-namespace",
        default=None,
        help="namespace of the operator's own Secret agentkube-digest-key (default: $POD_NAMESPACE, "
        "else the service account's namespace, else 'default')",
    )
    p.add_argument(
        "--dataplane-image",
        default=os.environ.get("AGENTKUBE_DATAPLANE_IMAGE", DEFAULT_DATAPLANE_IMAGE),
        help="image the MCP proxy and LLM gateway Deployments run (default %(default)s)",
    )
    p.add_argument(
        "--tool-gateway-controller",
        default=OperatorOptions.tool_gateway_controller,
        help="ToolGatewayClass spec.controller value this operator answers to (%(default)s)",
    )
    p.add_argument(
        "--gateway-class-name",
        default=OperatorOptions.gateway_class_name,
        help="Gateway API GatewayClass the Gateways of ToolGateways use (%(default)s)",
    )
    p.add_argument(
        "--network-policies",
        action=argparse.BooleanOptionalAction,
        default=OperatorOptions.network_policies,
        help="give each MCP, LLMGateway and ToolServer a NetworkPolicy admitting only its callers; "
        "--no-network-policies where the CNI does not enforce them (existing ones are deleted) "
        "(default: on)",
    )
    p.add_argument(
        "--graceful-shutdown-timeout", type=float, default=30.0, help="seconds (default %(default)s)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--log-format", default="auto", choices=["auto", "json", "console"], help="auto: console on a TTY"
    )
    p.add_argument(
        "--local-control-plane",
        default="never",
        choices=["never", "auto", "always"],
        help="auto: start a local etcd + kube-apiserver when no cluster answers (default %(default)s)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentkube", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _manager_parser(sub)
    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions")
    crds.add_argument("--output-dir", help="write one YAML file per CRD here instead of printing")
    # The data-plane programs parse their own flags (``agentkube mcp-proxy --help``).
    sub.add_parser("mcp-proxy", help="serve an MCP proxy (what an MCP's Deployment runs)", add_help=False)
    sub.add_parser(
        "llm-gateway", help="serve an LLM gateway (what an LLMGateway's Deployment runs)", add_help=False
    )
    return parser


def _crds(output_dir: str | None) -> int:
    from agentkube.api.crd import crds, render, write_crds

    if output_dir:
        for path in write_crds(output_dir):
            print(path)
    else:
        sys.stdout.write("".join(render(crd) for crd in crds()))
    return 0


def _kubeconfig_path(kubeconfig: str | None) -> Path:
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(kubeconfig or first or Path.home() / ".kube" / "config")


def _cluster_answers(path: Path) -> bool:
    """Whether the kubeconfig names a cluster that answers /version within a few seconds."""
    from agentkube.runtime.client import Client

    async def ask() -> None:
        async with await Client.from_kubeconfig(str(path), request_timeout=5) as client:
            await client.version()

    if not path.is_file():
        return False
    try:
        asyncio.run(ask())
    except Exception:
        return False
    return True


def _start_local_control_plane(dataplane_image: str) -> ControlPlane:
    from agentkube.api.crd import write_crds
    from agentkube.testing import (
        AGENTGATEWAY_CRDS_ENV,
        ControlPlane,
        ControlPlaneError,
        cached_crd_dirs,
        find_assets,
    )

    try:
        assets = find_assets()
        if not os.access(assets / "kube-controller-manager", os.X_OK):
            raise ControlPlaneError(f"no kube-controller-manager in {assets}")
    except ControlPlaneError as missing:
        # In a checkout, build the binaries once (they are cached); elsewhere say how to get them.
        script = Path("hack/build-envtest.sh")
        if not script.is_file():
            raise
        print(f"agentkube: {missing}; building them now (once, cached)", file=sys.stderr)
        built = subprocess.run(["bash", str(script)], check=True, stdout=subprocess.PIPE, text=True)
        os.environ["KUBEBUILDER_ASSETS"] = built.stdout.strip()
    plane = ControlPlane(use_existing_cluster=False).start()
    try:
        with tempfile.TemporaryDirectory(prefix="agentkube-crds-") as crd_dir:
            write_crds(crd_dir)
            third_party = cached_crd_dirs()
            installed = plane.install_crds([crd_dir, *third_party])
        agentgateway = [d for d in third_party if any(Path(d).glob("agentgateway.dev_*.yaml"))]
        if agentgateway and any(name.endswith(".agentgateway.dev") for name in installed):
            print(f"agentkube: agentgateway's CRDs from {agentgateway[0]}", file=sys.stderr)
        else:
            print(
                f"agentkube: agentgateway's CRDs are not installed (set {AGENTGATEWAY_CRDS_ENV} to a "
                "directory of them, e.g. its Helm chart's agentgateway-crds/templates); ToolGateways stay "
                "Accepted=False (AgentgatewayNotInstalled) and deploy nothing until the CRDs are installed, "
                "then are taken up with no restart",
                file=sys.stderr,
            )
        plane.start_node([dataplane_image], prefer_service_ports=True)
    except BaseException:
        plane.stop()
        raise
    return plane


def _announce_services(plane: ControlPlane, stop: threading.Event) -> None:
    """Print each Service port the local node serves, once, as it appears (a daemon thread)."""
    told: dict[str, str] = {}
    while not stop.wait(0.5):
        try:
            services = plane.services()
        except Exception:  # the node went away: nothing more to tell
            return
        for key, address in sorted(services.items()):
            if told.get(key) != address:
                told[key] = address
                print(f"agentkube: service {key} answers at http://{address}", flush=True)
        for key in set(told) - set(services):
            del told[key]


async def _run_manager(args: argparse.Namespace, kubeconfig: str | None) -> int:
    import prometheus_client

    from agentkube.controllers import setup_all
    from agentkube.controllers.secrets import load_digest_key, operator_namespace
    from agentkube.runtime.client import Client
    from agentkube.runtime.leaderelection import LeaderElectionLost
    from agentkube.runtime.logging import configure_logging
    from agentkube.runtime.manager import Manager, ManagerOptions

    configure_logging(args.log_level, args.log_format)
    # controller-runtime exposes no *_created series; without them our /metrics matches its dashboards.
    prometheus_client.disable_created_metrics()
    options = ManagerOptions(
        metrics_bind_address=args.metrics_bind_address,
        health_probe_bind_address=args.health_probe_bind_address,
        leader_election=args.leader_elect,
        leader_election_id=args.leader_election_id,
        graceful_shutdown_timeout=args.graceful_shutdown_timeout,
        namespace=args.namespace,
        **(
            {"leader_election_namespace": args.leader_election_namespace}
            if args.leader_election_namespace
            else {}
        ),
    )
    async with await Client.from_kubeconfig(kubeconfig) as client:
        # Before any informer starts: the Secret cache's digests are made with this key.
        digest_key = await load_digest_key(client, operator_namespace(args.operator_namespace))
        manager = Manager(client, options)
        setup_all(
            manager,
            OperatorOptions(
                dataplane_image=args.dataplane_image,
                tool_gateway_controller=args.tool_gateway_controller,
                gateway_class_name=args.gateway_class_name,
                network_policies=args.network_policies,
                digest_key=digest_key,
            ),
        )
        try:
            await manager.run()
        except LeaderElectionLost:
            return 1
    return 0


def _no_cluster_reason(path: Path) -> str:
    if not path.is_file():
        return f"no kubeconfig at {path}"
    return f"no cluster answers at the kubeconfig {path}"


def _manager(args: argparse.Namespace) -> int:
    plane = None
    kubeconfig = args.kubeconfig
    stop_announcing = threading.Event()
    path = _kubeconfig_path(kubeconfig)
    if args.local_control_plane == "always" or (
        args.local_control_plane == "auto" and not _cluster_answers(path)
    ):
        why = "asked for" if args.local_control_plane == "always" else _no_cluster_reason(path)
        print(f"agentkube: {why}; starting a local cluster (control plane and a local node)")
        plane = _start_local_control_plane(args.dataplane_image)
        kubeconfig = str(plane.kubeconfig)
        print(f"agentkube: local control plane ready at {plane.host}")
        print(f"agentkube: use it with: export KUBECONFIG={kubeconfig}")
        print(
            f"agentkube: in-cluster Service names answer through the local node's proxy, e.g. "
            f"curl --proxy {plane.node_proxy} http://<service>.<namespace>.svc.cluster.local:<port>/",
            flush=True,
        )
        threading.Thread(target=_announce_services, args=(plane, stop_announcing), daemon=True).start()
    try:
        return asyncio.run(_run_manager(args, kubeconfig))
    except KeyboardInterrupt:
        return 130
    finally:
        stop_announcing.set()
        if plane is not None:
            plane.stop()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mcp-proxy"]:
        from agentkube.dataplane.mcp.proxy import main as mcp_proxy

        return mcp_proxy(argv[1:])
    if argv[:1] == ["llm-gateway"]:
        from agentkube.dataplane.llm.program import main as llm_gateway

        return llm_gateway(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "crds":
        return _crds(args.output_dir)
    return _manager(args)


if __name__ == "__main__":
    sys.exit(main())
