import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { toJson } from "@bufbuild/protobuf";
import { FileOptionsSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { file_orchestration_state_v1_circuit_breaker_service } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { file_orchestration_state_v1_retention_service } from "../../gen/orchestration/state/v1/retention_service_pb.js";
import { file_orchestration_state_v1_routing_audit_service } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { file_orchestration_state_v1_statistics_service } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { file_orchestration_state_v1_workflow_state_service } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";

// The contract as clients in other languages compile it: every file carries
// the options their generators read, so that Go, Java, C#, PHP and Ruby code
// generation needs no options on the command line.
const contractDir = path.resolve(import.meta.dirname, "../../proto/orchestration/state/v1");
const files = [
  file_orchestration_state_v1_circuit_breaker_service,
  file_orchestration_state_v1_retention_service,
  file_orchestration_state_v1_routing_audit_service,
  file_orchestration_state_v1_statistics_service,
  file_orchestration_state_v1_workflow_state_service,
];

describe("the contract's language options", () => {
  it("cover every .proto file of the package", () => {
    const onDisk = readdirSync(contractDir).filter((f) => f.endsWith(".proto")).sort();
    expect(files.map((f) => path.basename(f.proto.name)).sort()).toEqual(onDisk);
  });

  it.each(files.map((f) => [f.proto.name, f] as const))("%s declares the options of Buf's managed mode, and go_package", (_name, file) => {
    // java_outer_classname is the file name in PascalCase plus "Proto", as
    // Buf's managed mode would derive it; it never collides with a message.
    const outer = path
      .basename(file.proto.name, ".proto")
      .replace(/(^|_)([a-z])/g, (_m, _s: string, c: string) => c.toUpperCase())
      .concat("Proto");
    expect(file.proto.options && toJson(FileOptionsSchema, file.proto.options)).toEqual({
      csharpNamespace: "Orchestration.State.V1",
      goPackage: "github.com/orchestrator-state/orchestrator-state/gen/go/orchestration/state/v1;statev1",
      javaMultipleFiles: true,
      javaOuterClassname: outer,
      javaPackage: "com.orchestration.state.v1",
      objcClassPrefix: "OSX",
      phpMetadataNamespace: "Orchestration\\State\\V1\\GPBMetadata",
      phpNamespace: "Orchestration\\State\\V1",
      rubyPackage: "Orchestration::State::V1",
    });
    expect(file.messages.map((m) => m.name)).not.toContain(outer);
  });

  it("has comments without backslashes, which generated Python and Java docstrings would read as escapes", () => {
    // grpc_python_plugin copies comments into docstrings verbatim: a "\ud800"
    // there made the generated module fail to import.
    for (const name of readdirSync(contractDir).filter((f) => f.endsWith(".proto"))) {
      const comments = readFileSync(path.join(contractDir, name), "utf8")
        .split("\n")
        .filter((line) => line.trimStart().startsWith("//"));
      expect(comments.filter((line) => line.includes("\\")), name).toEqual([]);
    }
  });
});
