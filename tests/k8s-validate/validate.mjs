// Validates Kubernetes manifests (a multi-document YAML stream on stdin, e.g. `kubectl kustomize k8s/`) against the
// Kubernetes OpenAPI schemas that kubernetes-models ships, offline. Prints one line per resource; exits 1 when any
// resource is invalid or of a kind it has no schema for.
import { parseAllDocuments } from "yaml";

const input = await new Promise((resolve, reject) => {
  let text = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
  process.stdin.on("error", reject);
});

let failures = 0;
let count = 0;
for (const document of parseAllDocuments(input)) {
  if (document.errors.length > 0) {
    console.log(`invalid YAML: ${document.errors.map((e) => e.message).join("; ")}`);
    failures++;
    continue;
  }
  const resource = document.toJS();
  if (resource === null) continue;
  count++;
  const { apiVersion, kind } = resource;
  const name = `${kind ?? "?"}/${resource.metadata?.name ?? "?"}`;
  let Model;
  try {
    Model = (await import(`kubernetes-models/${apiVersion}`))[kind];
  } catch {
    Model = undefined;
  }
  if (typeof Model !== "function") {
    console.log(`${name}: no schema for apiVersion ${apiVersion} kind ${kind}`);
    failures++;
    continue;
  }
  try {
    new Model(resource).validate();
    console.log(`${name}: valid`);
  } catch (e) {
    console.log(`${name}: INVALID: ${e.message}`);
    failures++;
  }
}
if (count === 0) {
  console.log("no resources on stdin");
  failures++;
}
console.log(`${count - failures < 0 ? 0 : count - failures} valid, ${failures} invalid`);
process.exit(failures === 0 ? 0 : 1);
