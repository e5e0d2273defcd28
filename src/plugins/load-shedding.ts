/**
 * Load shedding: a saturated process answers 503 with Retry-After at once (providers retry)
 * instead of letting requests time out (@fastify/under-pressure).
 */
import type { FastifyInstance } from 'fastify'
import underPressure from '@fastify/under-pressure'
import fp from 'fastify-plugin'
import type { Config } from '../config/config.ts'
import type { Metrics } from '../metrics.ts'

async function loadSheddingPlugin (app: FastifyInstance, opts: { config: Config, metrics: Metrics }): Promise<void> {
  const { config, metrics } = opts
  await app.register(underPressure, {
    maxEventLoopDelay: config.pressure.maxEventLoopDelayMs,
    maxEventLoopUtilization: config.pressure.maxEventLoopUtilization,
    maxHeapUsedBytes: config.pressure.maxHeapUsedBytes,
    sampleInterval: config.pressure.sampleIntervalMs,
    // Utilisation over the last interval: a cumulative figure since start-up hides a saturated minute.
    eventLoopUtilizationMode: 'interval',
    pressureHandler: (_request, reply, type, value) => {
      // An infinite delay means the last sample interval had no samples at all: one synchronous
      // block (start-up: PGlite's WASM, migrations) that is over, since this request is running.
      // Shedding on it would refuse the first second of traffic after every start.
      if (type === 'eventLoopDelay' && value === Infinity) return
      metrics.shed.inc({ reason: String(type) })
      reply.code(503).header('retry-after', '5').send({ code: 'overloaded', message: `Tidings is overloaded (${String(type)}); retry later` })
    }
  })
}

/** Registered with fastify-plugin: it must watch every route, not only its own context. */
export const loadShedding = fp(loadSheddingPlugin, { name: 'load-shedding' })
