/**
 * tap's `before` script (package.json "tap".before): starts the run's database keeper
 * (database-keeper.ts), detached so that it outlives this script and tap's Ctrl-C reaches it only
 * through tap's disappearance, waits until it has published the server, and says which one.
 */
import { spawn } from 'node:child_process'
import { openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { readRunState } from './database-source.ts'

const tapPid = process.ppid
const errors = path.join(tmpdir(), `tidings-test-database-${tapPid}.log`)
const keeper = spawn(process.execPath, [fileURLToPath(new URL('database-keeper.ts', import.meta.url)), String(tapPid)], {
  detached: true,
  stdio: ['ignore', 'ignore', openSync(errors, 'w')],
  env: process.env
})
keeper.unref()
let exited = false
keeper.once('exit', () => { exited = true })
const giveUpAt = Date.now() + 180_000
for (;;) {
  const state = readRunState(tapPid)
  if (state !== undefined) {
    console.log(`# test database: ${state.description}`)
    break
  }
  if (exited || Date.now() > giveUpAt) {
    if (!exited) keeper.kill('SIGTERM')
    let why = ''
    try { why = readFileSync(errors, 'utf8').trim() } catch {}
    console.log(`# test database: none could be started; each test file will try on its own.\n# ${why.split('\n').join('\n# ')}`)
    break
  }
  await new Promise((resolve) => setTimeout(resolve, 100))
}
rmSync(errors, { force: true })
