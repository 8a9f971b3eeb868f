import { Code, ConnectError } from "@connectrpc/connect";
import { POSITIVE_INT8_TEXT } from "../ranges.js";

// Etags of stored resources (AIP-154): every execution and breaker row carries
// a version from one sequence (row_version_seq), so an etag never repeats,
// even across a delete and a re-create (retention policies count from 1). The
// etag is that version's text; the functions below are the one place that
// says so, and how a conditional write answers a mismatch, for every resource.

/** The etag of a stored version; etags are opaque to clients. */
export function etagOf(version: string): string {
  return version;
}

/** The version an etag stands for, or undefined when it cannot be one of ours (a mismatch). */
export function versionOfEtag(etag: string): string | undefined {
  return POSITIVE_INT8_TEXT.test(etag) ? etag : undefined;
}

/** A version no row has: versions count from 1 (retention policies) or from 10^12 (row_version_seq). */
const NO_VERSION = "0";

/**
 * The version a conditional write requires of the stored row: undefined when
 * the request has no etag (the write takes whatever is stored). An etag that
 * cannot be one of ours requires a version no row has: the write matches
 * nothing and answers etagMismatch, as for a stale etag.
 */
export function requiredVersion(etag: string): string | undefined {
  return etag === "" ? undefined : (versionOfEtag(etag) ?? NO_VERSION);
}

/**
 * ABORTED for a conditional write that matched nothing: `stored` names the
 * resource the client must get again, `absent` how it may be missing.
 */
export function etagMismatch(etag: string, stored: string, absent = "does not exist"): ConnectError {
  return new ConnectError(`etag "${etag}" does not match ${stored} (it changed, or ${absent}); get it again and retry`, Code.Aborted);
}
