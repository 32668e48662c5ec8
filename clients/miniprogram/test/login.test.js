// login() and request() against a real wxlogin and a real WeChat simulator (see harness.js);
// only `wx` is a stand-in (fake-wx.js), and its calls go to those real services.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { WxLoginError } from '../wxlogin.js'
import { mintCode, postJson, setFaults } from './harness.js'
import { useStack } from './stack.js'

// A short login wait, so that a slow WeChat (the simulator's latency fault) yields a 202.
const stack = useStack({ env: { WXLOGIN_LOGIN_WAIT_MS: '200' }, users: 'js-user' })
const setup = (user) => stack.setup(user)

async function me (token) {
  const r = await fetch(`${stack.api}/v1/me`, { headers: { authorization: `Bearer ${token}` } })
  return { status: r.status, body: await r.json() }
}

const logins = (wx) => wx.calls.requests.filter((r) => r.url.includes('/v1/login'))

test('login() exchanges a fresh wx.login code for a token that /v1/me accepts, and stores only the token', async () => {
  const { wx, client } = setup()
  const token = await client.login()
  assert.match(token, /^wxl_[A-Za-z0-9_-]{43}$/)
  assert.equal(wx.calls.login, 1)
  assert.equal(client.getToken(), token)
  const stored = wx.storage.get('wxlogin.session')
  assert.deepEqual(Object.keys(stored).sort(), ['expiresAt', 'token'])
  assert.ok(stored.expiresAt > Date.now() + 3600 * 1000)
  const who = await me(token)
  assert.equal(who.status, 200)
  assert.match(who.body.openid, /^o/)
})

test('login() follows a 202 ticket, waiting retry_after_ms between polls, until the token arrives', async () => {
  const { wx, client } = setup()
  await setFaults(stack.sim, { latency_ms: 1500 })
  let token
  try {
    token = await client.login()
  } finally {
    await setFaults(stack.sim, {})
  }
  const [post, ...polls] = logins(wx)
  assert.equal(post.method, 'POST')
  assert.equal(post.statusCode, 202, 'WeChat took 1.5 s, more than the 200 ms login wait')
  assert.equal(typeof post.answer.ticket, 'string')
  assert.ok(polls.length >= 1, 'the ticket was polled')
  let previous = post
  for (const poll of polls) {
    assert.equal(poll.method, 'GET')
    // The ticket of the answer before (each 202 carries a freshly sealed one).
    assert.equal(poll.url, `${stack.api}/v1/login/${encodeURIComponent(previous.answer.ticket)}`)
    // Each poll waited the retry_after_ms of the answer before it (timers may fire 1 ms early).
    assert.ok(poll.startedAt - previous.answeredAt >= previous.answer.retry_after_ms - 2,
      `polled after ${poll.startedAt - previous.answeredAt} ms, asked to wait ${previous.answer.retry_after_ms} ms`)
    previous = poll
  }
  assert.equal(polls.at(-1).statusCode, 200)
  assert.equal(polls.at(-1).answer.token, token)
  assert.equal(wx.calls.login, 1, 'a slow login is followed, not restarted with a new code')
  assert.equal((await me(token)).status, 200)
})

test('login() gets one fresh code from wx.login when the server says the code was already used (40163)', async () => {
  const { wx, client, user } = setup()
  const used = await mintCode(stack.sim, user)
  assert.equal((await postJson(`${stack.api}/v1/login`, { code: used })).status, 200)
  wx.queueCodes(used)
  const token = await client.login()
  assert.equal(wx.calls.login, 2)
  const [first, second] = logins(wx)
  assert.deepEqual([first.statusCode, first.answer.errcode], [409, 40163])
  assert.equal(JSON.parse(first.body).code, used)
  assert.notEqual(JSON.parse(second.body).code, used, 'the used code is never sent again')
  assert.equal((await me(token)).status, 200)
})

test('login() gets one fresh code from wx.login when WeChat rejects the code as invalid (40029)', async () => {
  const { wx, client } = setup()
  wx.queueCodes('0' + 'x'.repeat(31)) // looks like a code, but WeChat never issued it
  const token = await client.login()
  assert.equal(wx.calls.login, 2)
  assert.deepEqual([logins(wx)[0].statusCode, logins(wx)[0].answer.errcode], [400, 40029])
  assert.equal((await me(token)).status, 200)
})

test('login() gives up with the server\'s error when the fresh code is refused too, and stores nothing', async () => {
  const { wx, client, user } = setup()
  const used = [await mintCode(stack.sim, user), await mintCode(stack.sim, user)]
  for (const code of used) assert.equal((await postJson(`${stack.api}/v1/login`, { code })).status, 200)
  wx.queueCodes(...used)
  await assert.rejects(client.login(), (e) => {
    assert.ok(e instanceof WxLoginError)
    assert.deepEqual([e.status, e.errcode], [409, 40163])
    return true
  })
  assert.equal(wx.calls.login, 2, 'one fresh code, not more')
  assert.equal(logins(wx).length, 2)
  assert.equal(client.getToken(), null)
})

test('concurrent login() calls share one wx.login and one exchange', async () => {
  const { wx, client } = setup()
  const tokens = await Promise.all([client.login(), client.login(), client.login()])
  assert.equal(new Set(tokens).size, 1)
  assert.equal(wx.calls.login, 1)
  assert.equal(logins(wx).length, 1)
})

test('request() adds the bearer token and, when a logout killed it, logs in once again and repeats the call', async () => {
  const { wx, client } = setup()
  const first = await client.login()
  const ok = await client.request({ url: '/v1/me' })
  assert.equal(ok.statusCode, 200)
  assert.equal(wx.calls.requests.at(-1).header.authorization, `Bearer ${first}`)

  assert.equal((await postJson(`${stack.api}/v1/logout`, undefined, { authorization: `Bearer ${first}` })).status, 204)
  const res = await client.request({ url: '/v1/me' })
  assert.equal(res.statusCode, 200)
  assert.equal(res.data.openid, ok.data.openid, 'the same user, logged in again')
  assert.equal(wx.calls.login, 2)
  const meCalls = wx.calls.requests.filter((r) => r.url.endsWith('/v1/me'))
  assert.deepEqual(meCalls.map((r) => r.statusCode), [200, 401, 200])
  const second = client.getToken()
  assert.notEqual(second, first)
  assert.equal(meCalls[2].header.authorization, `Bearer ${second}`)
})

test('request() calls that all meet the dead token at once share one new login', async () => {
  const { wx, client } = setup()
  const first = await client.login()
  await postJson(`${stack.api}/v1/logout`, undefined, { authorization: `Bearer ${first}` })
  const answers = await Promise.all([1, 2, 3].map(() => client.request({ url: '/v1/me' })))
  assert.deepEqual(answers.map((a) => a.statusCode), [200, 200, 200])
  assert.equal(wx.calls.login, 2, 'one login at start, one re-login for all three')
})

test('request() logs in first when there is no session yet', async () => {
  const { wx, client } = setup()
  const res = await client.request({ url: '/v1/me' })
  assert.equal(res.statusCode, 200)
  assert.deepEqual(wx.calls.order.slice(0, 2), ['wx.login', 'request POST /v1/login'])
})

test('the helper never stores the openid nor sends it anywhere', async () => {
  const { wx, client } = setup()
  await client.login()
  const { data } = await client.request({ url: '/v1/me' })
  const openid = data.openid
  assert.match(openid, /^o/)
  await client.request({ url: '/v1/me' })
  assert.ok(!JSON.stringify([...wx.storage]).includes(openid), 'not in storage')
  for (const r of wx.calls.requests) {
    assert.ok(!r.url.includes(openid) && !JSON.stringify(r.header).includes(openid) &&
      !(r.body || '').includes(openid), `not sent: ${r.method} ${r.url}`)
  }
})

test('logout() ends the session on the server and forgets the token', async () => {
  const { client } = setup()
  const token = await client.login()
  await client.logout()
  assert.equal(client.getToken(), null)
  assert.equal((await me(token)).status, 401)
})
