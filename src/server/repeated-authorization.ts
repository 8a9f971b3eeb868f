import type { IncomingHttpHeaders } from "node:http2";

/**
 * Puts back the `authorization` fields node:http2 and node:http dropped: for a
 * single-value header they keep only the first field of a request (its
 * `headers` object), though every field is in `rawHeaders`. Several fields are
 * joined with ", " as for any other repeated header, so that authentication
 * sees several keys, which are not one key (UNAUTHENTICATED), instead of the
 * first one. Changes `headers` in place, before anything reads them; a request
 * with at most one field is left as it is (and costs one scan of its raw
 * headers only when it has the header at all).
 */
export function joinRepeatedAuthorization(headers: IncomingHttpHeaders, rawHeaders: readonly string[] | undefined): void {
  if (headers.authorization === undefined || rawHeaders === undefined) return;
  let values: string[] | undefined;
  let first: string | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    // HTTP/2 names are lower case; HTTP/1.1 ones may be in any case.
    if (name.length !== 13 || name.toLowerCase() !== "authorization") continue;
    if (first === undefined) first = rawHeaders[i + 1]!;
    else (values ??= [first]).push(rawHeaders[i + 1]!);
  }
  if (values !== undefined) headers.authorization = values.join(", ");
}
