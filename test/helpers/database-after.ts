/**
 * tap's `after` script (package.json "tap".after): asks the run's database keeper to clean up
 * (see database-keeper.ts) and waits until it has.
 */
import { readRunState } from './database-source.ts'

const state = readRunState(process.ppid)
if (state !== undefined) {
  process.kill(state.keeperPid, 'SIGTERM')
  for (let i = 0; i < 600; i++) {
    try { process.kill(state.keeperPid, 0) } catch { break }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
