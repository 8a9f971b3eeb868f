// The lock of an embedded database directory (DATA_DIR): one process at a
// time, like PostgreSQL's postmaster.pid. PGlite itself locks nothing, and two
// processes on one directory each see only their own writes and lose
// acknowledged ones at the next start (issue 12, item 4).
//
// The lock is a file in the directory holding the owner's PID and the start
// time of that process (from /proc, where there is one): a lock whose process
// is gone, or whose PID now belongs to another process (PIDs are reused after
// a crash, and a container's server is PID 1 at every start), is stale and
// taken over. Node has no flock(2), so the file, not the kernel, is the lock;
// the process removes it when it exits, and a SIGKILLed one leaves a stale
// lock that the next start takes over.
import * as fs from "node:fs";
import * as path from "node:path";

/** The lock file's name inside DATA_DIR. */
export const LOCK_FILE = "orchestrator-state.lock";

/** Another live process holds the directory. */
export class DataDirLockedError extends Error {
  override readonly name = "DataDirLockedError";
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(`DATA_DIR ${dataDir} is in use by another process (PID ${pid}): one server per data directory; stop it or use another DATA_DIR`);
  }
}

/** The directory cannot be created or written (permissions, a read-only file system, a file in the way). */
export class DataDirUnwritableError extends Error {
  override readonly name = "DataDirUnwritableError";
  constructor(
    readonly dataDir: string,
    cause: NodeJS.ErrnoException,
  ) {
    super(`DATA_DIR ${dataDir} is not a writable directory (${cause.code ?? "error"}: ${cause.message})`);
  }
}

/** A held lock; `release` removes it (the process's "exit" does too). */
export interface DataDirLock {
  readonly path: string;
  release(): void;
}

interface Owner {
  pid: number;
  /** The process's start time in clock ticks since boot (/proc/PID/stat field 22); null where unknown. */
  started: string | null;
}

/**
 * Takes the lock of `dataDir` (creating the directory if needed) for this
 * process. Throws DataDirLockedError naming the directory and the holder's
 * PID when a live process holds it, DataDirUnwritableError when the directory
 * cannot be written.
 */
export function lockDataDir(dataDir: string, pid: number = process.pid): DataDirLock {
  const dir = path.resolve(dataDir);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new DataDirUnwritableError(dir, err as NodeJS.ErrnoException);
  }
  const file = path.join(dir, LOCK_FILE);
  const mine = JSON.stringify({ pid, started: startTimeOf(pid) } satisfies Owner);
  // Two rounds: the second follows the removal of a stale lock.
  for (let round = 0; round < 2; round++) {
    try {
      fs.writeFileSync(file, `${mine}\n`, { flag: "wx", mode: 0o644 });
      return held(file, mine);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EEXIST") throw new DataDirUnwritableError(dir, err as NodeJS.ErrnoException);
    }
    const text = readOrEmpty(file);
    const owner = parseOwner(text);
    if (owner !== undefined && owner.pid !== pid && isAlive(owner)) throw new DataDirLockedError(dir, owner.pid);
    takeOverStale(file, text);
  }
  // Another process took the stale lock between our two attempts.
  const owner = parseOwner(readOrEmpty(file));
  throw new DataDirLockedError(dir, owner?.pid ?? 0);
}

function held(file: string, mine: string): DataDirLock {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off("exit", release);
    // Only our own lock: never one a later process took over.
    if (readOrEmpty(file).trim() === mine) fs.rmSync(file, { force: true });
  };
  process.on("exit", release);
  return { path: file, release };
}

/**
 * Removes a stale lock, unless it changed since we read it (another process
 * took it over first): it is renamed away atomically, and put back if what was
 * renamed is not what we judged stale.
 */
function takeOverStale(file: string, staleText: string): void {
  const aside = `${file}.stale-${process.pid}`;
  try {
    fs.renameSync(file, aside);
  } catch {
    return; // gone already: the next round creates it
  }
  if (readOrEmpty(aside) !== staleText) {
    try {
      fs.linkSync(aside, file); // a live lock: back where it was (fails if yet another one is there)
    } catch {
      // the newer lock stays
    }
  }
  fs.rmSync(aside, { force: true });
}

function readOrEmpty(file: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function parseOwner(text: string): Owner | undefined {
  try {
    const value = JSON.parse(text) as Partial<Owner>;
    if (typeof value.pid === "number" && Number.isInteger(value.pid) && value.pid > 0) {
      return { pid: value.pid, started: typeof value.started === "string" ? value.started : null };
    }
  } catch {
    // a lock half written by a process killed while writing it: stale
  }
  return undefined;
}

/** Whether the lock's owner still runs: its PID exists and, where /proc tells, started when the lock says. */
function isAlive(owner: Owner): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const started = startTimeOf(owner.pid);
  return owner.started === null || started === null || started === owner.started;
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or null without /proc. */
function startTimeOf(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: count after its last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19] ?? null;
  } catch {
    return null;
  }
}
