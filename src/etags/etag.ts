import { POSITIVE_INT8_TEXT } from "../ranges.js";

// Etags of stored resources (AIP-154): every execution and breaker row carries
// a version from one sequence (row_version_seq), so an etag never repeats,
// even across a delete and a re-create. The etag is that version's text; the
// functions below are the one place that says so, for every resource.

/** The etag of a stored version; etags are opaque to clients. */
export function etagOf(version: string): string {
  return version;
}

/** The version an etag stands for, or undefined when it cannot be one of ours (a mismatch). */
export function versionOfEtag(etag: string): string | undefined {
  return POSITIVE_INT8_TEXT.test(etag) ? etag : undefined;
}
