// Starts the real things the helper's tests talk to: the WeChat simulator (`wxlogin sim`) and a
// wxlogin (`wxlogin up`, which starts its own nats-server when none 2.10+ answers on 4222),
// each on a free port, in a temporary working directory. Nothing here is a mock.
//
// The wxlogin binary: $WXLOGIN_BIN if set, else `cargo build --bin wxlogin` is run first and
// target/debug/wxlogin (or $CARGO_TARGET_DIR/debug/wxlogin) is used.

import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, openSync, readFileSync, closeSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
// The simulator's demo app (`wxlogin sim` without --app).
export const APPID = 'wx0123456789abcdef'
export const SECRET = '00000000deadbeef00000000deadbeef'

let built = null
/** Path of the wxlogin binary, built once per test process. */
export function wxloginBin () {
  if (process.env.WXLOGIN_BIN) return process.env.WXLOGIN_BIN
  if (!built) {
    execFileSync('cargo', ['build', '--bin', 'wxlogin'], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] })
    built = join(process.env.CARGO_TARGET_DIR || join(REPO, 'target'), 'debug', 'wxlogin')
  }
  return built
}

export function freePort () {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Runs `wxlogin <args>` with its output in `dir/<name>.log`. */
function start (name, args, { dir, env }) {
  const logPath = join(dir, `${name}.log`)
  const log = openSync(logPath, 'a')
  const child = spawn(wxloginBin(), args, {
    cwd: dir,
    env: Object.assign({}, process.env, { NO_COLOR: '1' }, env),
    stdio: ['ignore', log, log]
  })
  closeSync(log)
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  return { name, child, logPath, exited, log: () => readFileSync(logPath, 'utf8') }
}

async function waitFor (proc, url, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  let done = false
  proc.exited.then(() => { done = true })
  while (Date.now() < deadline) {
    if (done) throw new Error(`${proc.name} exited early:\n${proc.log()}`)
    try {
      const r = await fetch(url)
      if (r.status === 200) return
    } catch (_) { /* not listening yet */ }
    await sleep(50)
  }
  throw new Error(`${proc.name} did not answer ${url} within ${timeoutMs} ms:\n${proc.log()}`)
}

/** SIGTERM (so `wxlogin up` stops its nats-server too), SIGKILL after 10 s. */
async function stop (proc) {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return
  proc.child.kill('SIGTERM')
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 10000)
  await proc.exited
  clearTimeout(timer)
}

/**
 * Starts the simulator and a wxlogin using it. Resolves to { api, sim, stop(), logs() }.
 * `env` adds WXLOGIN_* settings (e.g. WXLOGIN_LOGIN_WAIT_MS).
 */
export async function startStack ({ env = {} } = {}) {
  const bin = wxloginBin()
  const dir = mkdtempSync(join(tmpdir(), 'wxlogin-client-test-'))
  const [simPort, apiPort] = [await freePort(), await freePort()]
  const sim = `http://127.0.0.1:${simPort}`
  const api = `http://127.0.0.1:${apiPort}`
  const procs = []
  const stopAll = async () => {
    for (const p of procs.reverse()) await stop(p)
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const simProc = start('sim', ['sim', '--addr', `127.0.0.1:${simPort}`], { dir, env: { RUST_LOG: 'warn' } })
    procs.push(simProc)
    await waitFor(simProc, `${sim}/sim/stats`, 15000)
    const upProc = start('up', ['up'], {
      dir,
      env: Object.assign({
        RUST_LOG: 'warn',
        WXLOGIN_HTTP_ADDR: `127.0.0.1:${apiPort}`,
        WXLOGIN_WECHAT_BASE_URL: sim,
        WXLOGIN_APPS: `${APPID}=${SECRET}`,
        WXLOGIN_DATABASE_URL: `sqlite://${join(dir, 'w.db')}?mode=rwc`,
        WXLOGIN_NATS_PREFIX: `js${randomBytes(6).toString('hex')}`
      }, env)
    })
    procs.push(upProc)
    await waitFor(upProc, `${api}/readyz`, 60000)
  } catch (e) {
    await stopAll()
    throw e
  }
  return {
    api,
    sim,
    bin,
    stop: stopAll,
    logs: () => procs.map((p) => `--- ${p.name}\n${p.log()}`).join('\n')
  }
}

/** POSTs JSON, answers { status, body }. */
export async function postJson (url, body, headers = {}) {
  const r = await fetch(url, {
    method: 'POST',
    headers: Object.assign({ 'content-type': 'application/json' }, headers),
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await r.text()
  let parsed = text
  try { parsed = JSON.parse(text) } catch (_) { /* not JSON */ }
  return { status: r.status, body: parsed }
}

/** The simulated wx.login(): a fresh single-use code of `user`. */
export async function mintCode (sim, user) {
  const r = await postJson(`${sim}/sim/login`, { appid: APPID, user })
  if (r.status !== 200) throw new Error(`sim/login answered ${r.status}: ${JSON.stringify(r.body)}`)
  return r.body.code
}

/** Sets the simulator's faults (an empty object clears them). */
export async function setFaults (sim, faults) {
  const r = await postJson(`${sim}/sim/faults`, faults)
  if (r.status !== 200) throw new Error(`sim/faults answered ${r.status}: ${JSON.stringify(r.body)}`)
}

/** The simulator's exact counts (GET /sim/stats). */
export async function simStats (sim) {
  const r = await fetch(`${sim}/sim/stats`)
  if (r.status !== 200) throw new Error(`sim/stats answered ${r.status}`)
  return r.json()
}

/** Queues answers for the next calls of one access-token endpoint (e.g. 'phone_number'). */
export async function scriptEndpoint (sim, endpoint, answers) {
  const r = await postJson(`${sim}/sim/script`, { endpoint, answers })
  if (r.status !== 200) throw new Error(`sim/script answered ${r.status}: ${JSON.stringify(r.body)}`)
}
