import { Code, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";

/** The code a call ends with ("ok" when it succeeds). */
export async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

/** The code a call ends with ("ok" on success), and how long it took (ms). */
export async function timedCode(call: Promise<unknown>): Promise<{ code: Code | "ok"; ms: number }> {
  const started = Date.now();
  try {
    await call;
    return { code: "ok", ms: Date.now() - started };
  } catch (err) {
    return { code: ConnectError.from(err).code, ms: Date.now() - started };
  }
}

/** The error a call fails with; fails the test when the call succeeds. */
export async function errorOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded, but an error was expected");
}

/** The INVALID_ARGUMENT a call fails with; fails the test if it succeeds or fails otherwise. */
export async function invalidArgumentOf(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => new Error("the call succeeded, but INVALID_ARGUMENT was expected"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  expect((err as ConnectError).code).toBe(Code.InvalidArgument);
  return err as ConnectError;
}

/** The fields a BadRequest detail of an error names. */
export function violatedFields(err: ConnectError): string[] {
  return err.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
}
