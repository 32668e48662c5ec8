// getPhoneNumber() against a real wxlogin (POST /v1/phone) and the simulator's phone codes
// (POST /sim/phone, the simulated getPhoneNumber button) and getuserphonenumber API.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { createClient, WxLoginError } from '../wxlogin.js'
import { postJson, scriptEndpoint, setFaults, simStats } from './harness.js'
import { useStack } from './stack.js'

// A short wait, so that a slow getuserphonenumber (a latency fault) yields a 202.
const stack = useStack({ env: { WXLOGIN_LOGIN_WAIT_MS: '200' }, users: 'js-phone' })
const setup = (user) => stack.setup(user)

const phoneCalls = (wx) => wx.calls.requests.filter((r) => r.url.includes('/v1/phone'))

/** Calls WeChat's phone API got (any answer), and the exchanges it billed. */
async function upstream () {
  const { apis } = await simStats(stack.sim)
  const endpoint = (apis.endpoints && apis.endpoints.phone_number) || { calls: 0 }
  return { calls: endpoint.calls, exchanged: apis.phone.exchanged }
}

function errcodeAnswer (errcode) {
  return { status: 200, content_type: 'application/json', body: JSON.stringify({ errcode, errmsg: 'scripted' }) }
}

function rejectsAsTapAgain (promise, status, errcode) {
  return assert.rejects(promise, (e) => {
    assert.ok(e instanceof WxLoginError, String(e))
    assert.deepEqual([e.code, e.status, e.errcode], ['tap_again', status, errcode], e.message)
    assert.match(e.message, /tap the button again/)
    return true
  })
}

test('getPhoneNumber() logs in when there is no session, posts the phone code with the token and resolves to the number', async () => {
  const { wx, client } = setup()
  const { event, number } = await wx.tapPhoneButton()
  const got = await client.getPhoneNumber(event)
  assert.deepEqual(got, number)
  assert.equal(typeof got.countryCode, 'string')
  assert.deepEqual(wx.calls.order,
    ['tap getPhoneNumber', 'wx.login', 'request POST /v1/login', 'request POST /v1/phone'])
  const [call] = phoneCalls(wx)
  assert.deepEqual(JSON.parse(call.body), { code: event.detail.code })
  assert.equal(call.header.authorization, `Bearer ${client.getToken()}`)
})

test('the same event passed twice gets the same number from one exchange at WeChat', async () => {
  const { wx, client } = setup()
  await client.login()
  const { event, number } = await wx.tapPhoneButton()
  const before = await upstream()
  assert.deepEqual(await client.getPhoneNumber(event), number)
  assert.deepEqual(await client.getPhoneNumber(event.detail), number, 'the detail alone works too')
  const after = await upstream()
  assert.deepEqual([after.calls - before.calls, after.exchanged - before.exchanged], [1, 1],
    'one call to getuserphonenumber, one billed exchange')
  assert.equal(phoneCalls(wx).length, 2)
})

test('a refused button (errMsg not getPhoneNumber:ok) rejects as denied and sends nothing', async () => {
  const { wx, client } = setup()
  await assert.rejects(
    client.getPhoneNumber({ type: 'getphonenumber', detail: { errMsg: 'getPhoneNumber:fail user deny' } }),
    (e) => {
      assert.ok(e instanceof WxLoginError)
      assert.equal(e.code, 'denied')
      assert.match(e.message, /user deny/)
      return true
    })
  // An event without a code (a base library before 2.21.2) is refused too, also unsent.
  await assert.rejects(client.getPhoneNumber({ detail: { errMsg: 'getPhoneNumber:ok' } }), TypeError)
  assert.deepEqual([wx.calls.login, wx.calls.requests.length], [0, 0], 'no wx.login, no request')
})

test('a phone code WeChat calls invalid (40029) rejects as tap_again and is never sent again', async () => {
  const { wx, client } = setup()
  await client.login()
  const { event } = await wx.tapPhoneButton()
  await scriptEndpoint(stack.sim, 'phone_number', [errcodeAnswer(40029)])
  const before = await upstream()
  await rejectsAsTapAgain(client.getPhoneNumber(event), 400, 40029)
  assert.equal(phoneCalls(wx).length, 1, 'the code is sent once')
  assert.equal((await upstream()).calls - before.calls, 1)
  // The user taps again: a new code goes through.
  const again = await wx.tapPhoneButton()
  assert.deepEqual(await client.getPhoneNumber(again.event), again.number)
})

test('a 40029 after a 502 (the code may be spent: 503 -1) rejects as tap_again too', async () => {
  const { wx, client } = setup()
  await client.login()
  const { event } = await wx.tapPhoneButton()
  const gateway = { status: 502, content_type: 'text/html', body: '<html>502 Bad Gateway</html>' }
  await scriptEndpoint(stack.sim, 'phone_number', [gateway, errcodeAnswer(40029)])
  await rejectsAsTapAgain(client.getPhoneNumber(event), 503, -1)
  assert.equal(phoneCalls(wx).length, 1)
})

test('on 401 getPhoneNumber() logs in again but does not send the code with the new session', async () => {
  const { wx, client } = setup()
  const first = await client.login()
  assert.equal((await postJson(`${stack.api}/v1/logout`, undefined, { authorization: `Bearer ${first}` })).status, 204)
  const { event } = await wx.tapPhoneButton()
  const before = await upstream()
  await rejectsAsTapAgain(client.getPhoneNumber(event), 401, 40001)
  assert.equal(wx.calls.login, 2, 'logged in again')
  const second = client.getToken()
  assert.ok(second && second !== first)
  assert.deepEqual(phoneCalls(wx).map((r) => [r.header.authorization, r.statusCode]), [[`Bearer ${first}`, 401]],
    'the code went once, with the dead token, and not with the new one')
  assert.equal((await upstream()).calls - before.calls, 0)
  const again = await wx.tapPhoneButton()
  assert.deepEqual(await client.getPhoneNumber(again.event), again.number)
  assert.equal(phoneCalls(wx).at(-1).header.authorization, `Bearer ${second}`)
})

test('getPhoneNumber() follows a 202 ticket with the session\'s token until the number arrives', async () => {
  const { wx, client } = setup()
  const token = await client.login()
  const { event, number } = await wx.tapPhoneButton()
  await setFaults(stack.sim, { endpoints: { phone_number: { latency_ms: 1500 } } })
  let got
  try {
    got = await client.getPhoneNumber(event)
  } finally {
    await setFaults(stack.sim, {})
  }
  assert.deepEqual(got, number)
  const [post, ...polls] = phoneCalls(wx)
  assert.deepEqual([post.method, post.statusCode], ['POST', 202], 'WeChat took 1.5 s, more than the 200 ms wait')
  assert.ok(polls.length >= 1, 'the ticket was polled')
  let previous = post
  for (const poll of polls) {
    assert.equal(poll.method, 'GET')
    assert.equal(poll.url, `${stack.api}/v1/phone/${encodeURIComponent(previous.answer.ticket)}`)
    assert.equal(poll.header.authorization, `Bearer ${token}`)
    assert.ok(poll.startedAt - previous.answeredAt >= previous.answer.retry_after_ms - 2)
    previous = poll
  }
  assert.equal(polls.at(-1).statusCode, 200)
  assert.ok(polls.every((p) => p.body === undefined), 'polls never carry the code')
})

test('a phone answer that does not come within maxLoginWaitMs, or no answer at all, rejects as tap_again', async () => {
  const { wx } = setup()
  const client = createClient({ baseUrl: stack.api, wx, maxLoginWaitMs: 300 })
  await client.login()
  const slow = await wx.tapPhoneButton()
  await setFaults(stack.sim, { endpoints: { phone_number: { latency_ms: 1500 } } })
  try {
    await rejectsAsTapAgain(client.getPhoneNumber(slow.event), 202, -1)
  } finally {
    await setFaults(stack.sim, {})
  }
  assert.equal(phoneCalls(wx).filter((r) => r.method === 'POST').length, 1, 'the code was posted once')
  // wx.request fails (no answer: the code may or may not have arrived).
  const lost = await wx.tapPhoneButton()
  const offline = Object.assign({}, wx, {
    request (options) {
      if (options.url.endsWith('/v1/phone')) return options.fail({ errMsg: 'request:fail timeout' })
      return wx.request(options)
    }
  })
  const cut = createClient({ baseUrl: stack.api, wx: offline })
  assert.equal(cut.getToken(), client.getToken(), 'the same stored session')
  await assert.rejects(cut.getPhoneNumber(lost.event), (e) => {
    assert.deepEqual([e.code, e.status], ['tap_again', 0])
    assert.match(e.message, /request:fail timeout.*tap the button again/)
    return true
  })
})
