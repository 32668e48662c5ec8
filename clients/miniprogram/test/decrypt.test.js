// decrypt() against a real wxlogin (POST /v1/decrypt) and the simulator's wx.getUserInfo()
// data, encrypted under the user's real current session_key.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { createClient, WxLoginError } from '../wxlogin.js'
import { fakeWx, getUserInfo } from './fake-wx.js'
import { APPID, startStack } from './harness.js'

let stack
let users = 0
const newUser = () => `js-decrypt-${++users}`

before(async () => {
  stack = await startStack()
})

after(async () => {
  if (stack) await stack.stop()
})

function setup (user = newUser()) {
  const wx = fakeWx({ sim: stack.sim, user })
  return { wx, client: createClient({ baseUrl: stack.api, wx }), user }
}

const decryptCalls = (wx) => wx.calls.requests.filter((r) => r.url.endsWith('/v1/decrypt'))

test('decrypt() sends encryptedData, iv, rawData and signature to /v1/decrypt and resolves to the user\'s profile', async () => {
  const { wx, client, user } = setup()
  await client.login()
  const detail = await getUserInfo(wx)
  const profile = await client.decrypt(detail)
  const { data: who } = await client.request({ url: '/v1/me' })
  assert.equal(profile.openId, who.openid)
  assert.equal(profile.nickName, user)
  assert.equal(profile.watermark.appid, APPID)
  const [call] = decryptCalls(wx)
  assert.equal(call.statusCode, 200)
  assert.deepEqual(Object.keys(JSON.parse(call.body)).sort(), ['encryptedData', 'iv', 'rawData', 'signature'])
  assert.equal(call.header.authorization, `Bearer ${client.getToken()}`)
  assert.equal(wx.calls.login, 1, 'no wx.login between getting the data and decrypting it')
})

test('decrypt() given a function logs in first when there is no session, and only then asks for the data', async () => {
  const { wx, client, user } = setup()
  const profile = await client.decrypt(() => getUserInfo(wx))
  assert.equal(profile.nickName, user)
  assert.deepEqual(wx.calls.order.slice(0, 3), ['wx.login', 'request POST /v1/login', 'wx.getUserInfo'])
})

test('data obtained before a fresh wx.login no longer decrypts, and decrypt() says it is stale', async () => {
  // The user logged in before (another device, an earlier launch), and the page got the data
  // under that login's session_key; this client has no session, so decrypt() has to log in,
  // and that wx.login replaces the session_key.
  const earlier = setup()
  await earlier.client.login()
  const detail = await getUserInfo(earlier.wx)

  const { wx, client } = setup(earlier.user)
  await assert.rejects(client.decrypt(detail), (e) => {
    assert.ok(e instanceof WxLoginError)
    // The rawData signature is checked first: it no longer matches under the new key (-41005);
    // without rawData the decryption itself fails (-41003). Both mean "stale".
    assert.deepEqual([e.status, e.staleData], [400, true])
    assert.ok([-41003, -41005].includes(e.errcode), `errcode ${e.errcode}`)
    assert.match(e.message, /get the data again/)
    return true
  })
  assert.equal(wx.calls.login, 1)
  // Without rawData/signature it is the decryption itself that fails.
  const bare = setup(earlier.user)
  await assert.rejects(bare.client.decrypt({ encryptedData: detail.encryptedData, iv: detail.iv }), (e) => {
    assert.deepEqual([e.status, e.errcode, e.staleData], [400, -41003, true])
    return true
  })
  // Getting the data again, after the latest login, works.
  const profile = await bare.client.decrypt(await getUserInfo(bare.wx))
  assert.equal(profile.nickName, earlier.user)
})

test('decrypt() refuses data without encryptedData and iv (a denied getUserInfo) without calling the server', async () => {
  const { wx, client } = setup()
  await client.login()
  await assert.rejects(client.decrypt({ errMsg: 'getUserInfo:fail auth deny' }), /auth deny/)
  assert.equal(decryptCalls(wx).length, 0)
})
