// The TypeScript SDK's client against an MCP endpoint: connect over Streamable HTTP, list tools,
// call one, get a prompt; print what it saw as one JSON line (the last line of stdout).
//
//   node ts_client.mjs <url> <node_modules dir holding @modelcontextprotocol/sdk>
//
// The SDK is imported from the directory given, not resolved from this file's location, since the
// peers are installed in a cache outside the repository (test/e2e/peers.py).
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [url, modules] = process.argv.slice(2);
const sdk = (path) => import(pathToFileURL(join(modules, "@modelcontextprotocol/sdk/dist/esm", path)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");

const client = new Client({ name: "agentkube-e2e-ts", version: "0.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
try {
  const { tools } = await client.listTools();
  const echoed = await client.callTool({ name: "s_echo", arguments: { message: "from the TypeScript SDK" } });
  const prompt = await client.getPrompt({ name: "h_args-prompt", arguments: { city: "Paris", state: "Île-de-France" } });
  console.log(
    JSON.stringify({
      protocolVersion: transport.protocolVersion,
      sessionId: transport.sessionId ?? null,
      tools: tools.map((tool) => tool.name),
      echo: echoed.content.map((block) => block.text).join(""),
      prompt: prompt.messages.map((message) => message.content.text).join(""),
    }),
  );
} finally {
  await transport.terminateSession().catch(() => {});
  await client.close();
}
