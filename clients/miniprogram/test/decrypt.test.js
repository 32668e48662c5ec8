// decrypt() against a real wxlogin (POST /v1/decrypt) and the simulator's wx.getUserInfo()
// data, encrypted under the user's real current session_key.

import { test } from 'node:test'
import assert from 'node:assert/strict'

import { WxLoginError } from '../wxlogin.js'
import { getUserInfo } from './fake-wx.js'
import { APPID } from './harness.js'
import { useStack } from './stack.js'

const stack = useStack({ users: 'js-decrypt' })
const setup = (user) => stack.setup(user)

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

test('checkSessionKey() is true for a fresh login, and false without asking anything when there is no session', async () => {
  const { wx, client } = setup()
  assert.equal(await client.checkSessionKey(), false)
  assert.equal(wx.calls.requests.length, 0)
  const token = await client.login()
  assert.equal(await client.checkSessionKey(), true)
  const check = wx.calls.requests.at(-1)
  assert.deepEqual([check.method, new URL(check.url).pathname, check.header.authorization],
    ['GET', '/v1/session-key', `Bearer ${token}`])
})

test('after a login elsewhere replaced the key, checkSessionKey() is false and decrypt() logs in again (409 87009)', async () => {
  const { wx, client, user } = setup()
  await client.login()
  // The same user logs in elsewhere: WeChat gives out a new session_key, and this one is stale.
  await setup(user).client.login()
  assert.equal(await client.checkSessionKey(), false)
  const profile = await client.decrypt(() => getUserInfo(wx))
  assert.equal(profile.nickName, user)
  assert.deepEqual(decryptCalls(wx).map((r) => [r.statusCode, JSON.parse(r.body).encryptedData !== undefined]),
    [[409, true], [200, true]])
  assert.equal(decryptCalls(wx)[0].answer.errcode, 87009)
  // The data is asked for again after the new login, whose key it is then encrypted under.
  assert.deepEqual(wx.calls.order.slice(-6), ['wx.getUserInfo', 'request POST /v1/decrypt',
    'wx.login', 'request POST /v1/login', 'wx.getUserInfo', 'request POST /v1/decrypt'])
  assert.equal(await client.checkSessionKey(), true, 'the new login\'s key is current')

  // Given data (not a function), decrypt() logs in again too; that login replaced the key the
  // data was encrypted under, so the error says to get the data again.
  const other = setup(user)
  await other.client.login()
  assert.equal(await client.checkSessionKey(), false)
  const detail = await getUserInfo(wx)
  await assert.rejects(client.decrypt(detail), (e) => {
    assert.deepEqual([e.staleData, e.code], [true, 'stale_data'])
    return true
  })
  assert.equal(await client.checkSessionKey(), true)
  assert.equal((await client.decrypt(await getUserInfo(wx))).nickName, user)
})
