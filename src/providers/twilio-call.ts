/**
 * Marks errors that came from a Twilio HTTP call, so that only those are read as Twilio's answer;
 * any other failure after a create (the database, a bug) means "maybe sent" (docs/fallback.md).
 * Shared by the fallback worker and `POST /v1/messages`.
 */

/** An error thrown by a Twilio HTTP call; `cause` is twilio-node's error. */
export class TwilioCallError extends Error {
  constructor (cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause })
    this.name = 'TwilioCallError'
  }
}

/** Runs a Twilio call; whatever it throws comes back wrapped in `TwilioCallError`. */
export async function viaTwilio<T> (call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (err) {
    throw new TwilioCallError(err)
  }
}
