// The peer of B1-B4: the service a team would write instead of adopting ours.
// A bare @grpc/grpc-js server with a `pg` pool of the same size, running the
// same statements as the raw-pg baseline (bench/lib/bare-sql.ts) and answering
// with the same messages as our server (through our row converters): protobuf
// decoding, no validation, no row-level security binding, no transaction, no
// interceptors, no logging. The tenant is taken from the x-tenant-id header as
// it comes. Listens on 127.0.0.1:<argv[2]>; DATABASE_URL and POOL_MAX from the
// environment. Run pinned to the server's core by bench/run.ts, measured with
// the same load generator as ours.
import * as grpc from "@grpc/grpc-js";
import { create, type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import pg from "pg";
import {
  RecordRoutingDecisionRequestSchema,
  RecordRoutingDecisionResponseSchema,
  RecordRoutingDecisionsRequestSchema,
  RecordRoutingDecisionsResponseSchema,
} from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { RecordTaskOutcomeRequestSchema, RecordTaskOutcomeResponseSchema } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import {
  GetWorkflowExecutionRequestSchema,
  GetWorkflowExecutionResponseSchema,
  SaveWorkflowExecutionRequestSchema,
  SaveWorkflowExecutionResponseSchema,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { durationToMicros } from "../../src/db/convert.js";
import { decisionFromRow, decisionToColumns } from "../../src/services/routing-audit/decision-row.js";
import { statisticsFromRow } from "../../src/services/statistics/statistics-row.js";
import { executionFromRow, executionToColumns } from "../../src/services/workflow-state/execution-row.js";
import { ADD_OUTCOME, decisionParameters, INSERT_DECISION, INSERT_DECISIONS_UNNEST, SELECT_EXECUTION, UPSERT_EXECUTION } from "../lib/bare-sql.js";
import { paths } from "../workloads.js";

// timestamptz and int8 as text, as our server reads them (nanosecond-exact
// timestamps, 64-bit counters), so the row converters get what they expect.
const asText = (value: string) => value;
const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.POOL_MAX ?? "10"),
  types: { getTypeParser: (oid: number, format?: string) => (oid === 1184 || oid === 20 ? asText : pg.types.getTypeParser(oid, format as "text")) },
});

type Handler<I extends DescMessage, O extends DescMessage> = (request: MessageShape<I>, tenant: string) => Promise<MessageShape<O>>;

function method<I extends DescMessage, O extends DescMessage>(path: string, input: I, output: O, handle: Handler<I, O>) {
  const definition: grpc.MethodDefinition<MessageShape<I>, MessageShape<O>> = {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (m) => Buffer.from(toBinary(input, m)),
    requestDeserialize: (b) => fromBinary(input, b),
    responseSerialize: (m) => Buffer.from(toBinary(output, m)),
    responseDeserialize: (b) => fromBinary(output, b),
  };
  const implementation = (call: grpc.ServerUnaryCall<MessageShape<I>, MessageShape<O>>, callback: grpc.sendUnaryData<MessageShape<O>>) => {
    handle(call.request, String(call.metadata.get("x-tenant-id")[0] ?? "")).then(
      (response) => callback(null, response),
      (err: Error) => callback({ code: grpc.status.INTERNAL, details: err.message }),
    );
  };
  return { definition, implementation };
}

const json = (v: unknown) => (v === null ? null : JSON.stringify(v));

const methods = {
  RecordRoutingDecision: method(paths.B1, RecordRoutingDecisionRequestSchema, RecordRoutingDecisionResponseSchema, async (req, tenant) => {
    const { rows } = await pool.query(`${INSERT_DECISION} RETURNING *`, [tenant, ...decisionParameters(decisionToColumns(req.decision!))]);
    return create(RecordRoutingDecisionResponseSchema, { decision: decisionFromRow(rows[0]) });
  }),
  RecordRoutingDecisions: method(paths.B2, RecordRoutingDecisionsRequestSchema, RecordRoutingDecisionsResponseSchema, async (req, tenant) => {
    const rows = req.decisions.map((d) => decisionParameters(decisionToColumns(d)));
    const columns = rows[0]!.map((_, col) => rows.map((r) => r[col]));
    const result = await pool.query(`${INSERT_DECISIONS_UNNEST} RETURNING *`, [tenant, ...columns]);
    return create(RecordRoutingDecisionsResponseSchema, { decisions: result.rows.map(decisionFromRow) });
  }),
  SaveWorkflowExecution: method(paths["B3-save"], SaveWorkflowExecutionRequestSchema, SaveWorkflowExecutionResponseSchema, async (req, tenant) => {
    const c = executionToColumns(req.execution!);
    const { rows } = await pool.query(UPSERT_EXECUTION, [
      tenant, c.execution_id, c.workflow_name, c.status, json(c.definition), json(c.context), json(c.step_executions),
      json(c.step_outputs), c.error_message, c.initiated_by, json(c.labels),
    ]);
    return create(SaveWorkflowExecutionResponseSchema, { execution: executionFromRow(rows[0]) });
  }),
  GetWorkflowExecution: method(paths["B3-get"], GetWorkflowExecutionRequestSchema, GetWorkflowExecutionResponseSchema, async (req, tenant) => {
    const { rows } = await pool.query(SELECT_EXECUTION, [tenant, req.executionId]);
    if (rows.length === 0) throw new Error(`execution ${req.executionId} not found`);
    return create(GetWorkflowExecutionResponseSchema, { execution: executionFromRow(rows[0]) });
  }),
  RecordTaskOutcome: method(paths.B4, RecordTaskOutcomeRequestSchema, RecordTaskOutcomeResponseSchema, async (req, tenant) => {
    const { rows } = await pool.query(ADD_OUTCOME, [tenant, req.agentKey, req.success ? 1 : 0, req.success ? 0 : 1, durationToMicros(req.duration)]);
    return create(RecordTaskOutcomeResponseSchema, { statistics: statisticsFromRow(rows[0]) });
  }),
};

const server = new grpc.Server();
server.addService(
  Object.fromEntries(Object.entries(methods).map(([name, m]) => [name, m.definition])) as grpc.ServiceDefinition,
  Object.fromEntries(Object.entries(methods).map(([name, m]) => [name, m.implementation])) as grpc.UntypedServiceImplementation,
);
server.bindAsync(`127.0.0.1:${process.argv[2]}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
});
