/**
 * `npm run retention`: deletes events and engagement older than RETENTION_DAYS now, in the same
 * small batches as the scheduled job, prints how many rows went from each table, and exits.
 */
import { runRetention } from '../src/maintenance/retention.ts'
import { startCli } from './maintenance-cli.ts'

const { config, database, close } = await startCli()
try {
  if (config.retention.days === 0) {
    console.log('RETENTION_DAYS is 0: nothing is deleted.')
  } else {
    const deleted = await runRetention(database.db, { days: config.retention.days })
    console.log(`Deleted rows older than ${config.retention.days} day(s): ${Object.entries(deleted).map(([table, n]) => `${table} ${n}`).join(', ')}.`)
  }
} finally {
  await close()
}
