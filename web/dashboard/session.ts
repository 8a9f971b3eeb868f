import type { Credentials } from "./api.js";

// The credentials live in sessionStorage only: gone when the tab closes, never
// in localStorage or a cookie, never sent anywhere but in the RPCs' headers.
const KEY = "orchestrator-state.dashboard.credentials";

/** The credentials of this tab's session, if signed in. */
export function loadCredentials(): Credentials | undefined {
  const raw = sessionStorage.getItem(KEY);
  if (raw === null) return undefined;
  try {
    const parsed = JSON.parse(raw) as Credentials;
    return typeof parsed === "object" && parsed !== null ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export function saveCredentials(credentials: Credentials): void {
  sessionStorage.setItem(KEY, JSON.stringify(credentials));
}

export function clearCredentials(): void {
  sessionStorage.removeItem(KEY);
}
