import { readFileSync } from "node:fs";

/** Where the server's certificate and private key are (the two settings of Config). */
export interface TlsSources {
  /** PEM certificate chain (TLS_CERT_FILE). */
  tlsCertFile: string | undefined;
  /** PEM private key of the certificate (TLS_KEY_FILE). */
  tlsKeyFile: string | undefined;
}

/** The certificate and key, read; undefined when TLS is not configured (h2c). */
export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/**
 * Reads the certificate and key when both are configured; undefined when
 * neither is. Throws an Error naming the setting when only one is set or a
 * file cannot be read, so that the server does not start in cleartext by
 * mistake.
 */
export function loadTls(sources: TlsSources): TlsFiles | undefined {
  const { tlsCertFile, tlsKeyFile } = sources;
  if (tlsCertFile === undefined && tlsKeyFile === undefined) return undefined;
  if (tlsCertFile === undefined) throw new Error("TLS_CERT_FILE must be set together with TLS_KEY_FILE");
  if (tlsKeyFile === undefined) throw new Error("TLS_KEY_FILE must be set together with TLS_CERT_FILE");
  return { cert: read(tlsCertFile, "TLS_CERT_FILE"), key: read(tlsKeyFile, "TLS_KEY_FILE") };
}

function read(file: string, setting: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`${setting}: cannot read ${file}: ${(err as Error).message}`);
  }
}
