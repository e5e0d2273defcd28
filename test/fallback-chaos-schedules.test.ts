// One of the fallback chaos tests (test/helpers/fallback-chaos.ts), in its own file so tap runs them in parallel.
import { randomSchedulesTest } from './helpers/fallback-chaos.ts'

randomSchedulesTest()
