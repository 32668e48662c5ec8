// A stand-in for the mini program's `wx` object, backed by real services:
// - wx.login() mints a real code from the simulator (POST {sim}/sim/login), unless codes were
//   queued with `queueCodes()` (to hand out a used or invalid code on purpose);
// - wx.request() makes a real HTTP call (fetch), with wx.request's conventions: `header`,
//   JSON `data`, `success` for any HTTP status, `fail` only when there is no answer;
// - wx.getUserInfo() returns what the simulator encrypts under the user's current session_key
//   (POST {sim}/sim/userinfo);
// - storage is an in-memory map with wx.setStorageSync's semantics ('' when missing).
// Every call is recorded in `calls`, in order.

import { APPID } from './harness.js'

export function fakeWx ({ sim, user, appid = APPID }) {
  const storage = new Map()
  const queued = []
  const calls = { login: 0, getUserInfo: 0, requests: [], order: [] }

  async function mint () {
    const r = await fetch(`${sim}/sim/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ appid, user })
    })
    const body = await r.json()
    if (r.status !== 200) throw new Error(`sim/login: ${r.status} ${JSON.stringify(body)}`)
    return body.code
  }

  async function doRequest ({ url, method = 'GET', data, header = {} }) {
    const headers = {}
    for (const [k, v] of Object.entries(header)) headers[k.toLowerCase()] = String(v)
    let target = url
    let body
    if (method === 'GET' || method === 'HEAD') {
      if (data && typeof data === 'object') {
        const q = new URLSearchParams(data).toString()
        if (q) target += (url.includes('?') ? '&' : '?') + q
      }
    } else if (data !== undefined) {
      if (!headers['content-type']) headers['content-type'] = 'application/json'
      if (typeof data === 'string') body = data
      else if (headers['content-type'].startsWith('application/x-www-form-urlencoded')) body = new URLSearchParams(data).toString()
      else body = JSON.stringify(data)
    }
    const record = { method, url: target, header: headers, body, startedAt: Date.now() }
    calls.requests.push(record)
    calls.order.push(`request ${method} ${new URL(target).pathname}`)
    const r = await fetch(target, { method, headers, body })
    const text = await r.text()
    let parsed = text
    try { parsed = JSON.parse(text) } catch (_) { /* wx.request leaves non-JSON as a string */ }
    record.statusCode = r.status
    record.answeredAt = Date.now()
    record.answer = parsed
    return { statusCode: r.status, data: parsed, header: Object.fromEntries(r.headers), errMsg: 'request:ok' }
  }

  return {
    calls,
    storage,
    /** The next wx.login() calls hand out these codes instead of minting fresh ones. */
    queueCodes (...codes) { queued.push(...codes) },

    login ({ success, fail }) {
      calls.login += 1
      calls.order.push('wx.login')
      const code = queued.length ? Promise.resolve(queued.shift()) : mint()
      code.then((c) => success({ code: c, errMsg: 'login:ok' }), (e) => fail({ errMsg: `login:fail ${e.message}` }))
    },

    request (options) {
      doRequest(options).then(options.success, (e) => options.fail({ errMsg: `request:fail ${e.message}` }))
    },

    getUserInfo ({ success, fail }) {
      calls.getUserInfo += 1
      calls.order.push('wx.getUserInfo')
      fetch(`${sim}/sim/userinfo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ appid, user })
      }).then(async (r) => {
        const body = await r.json()
        if (r.status !== 200) return fail({ errMsg: `getUserInfo:fail ${JSON.stringify(body)}` })
        success(Object.assign({ userInfo: JSON.parse(body.rawData), errMsg: 'getUserInfo:ok' }, body))
      }, (e) => fail({ errMsg: `getUserInfo:fail ${e.message}` }))
    },

    getStorageSync (key) { return storage.has(key) ? structuredClone(storage.get(key)) : '' },
    setStorageSync (key, value) { storage.set(key, structuredClone(value)) },
    removeStorageSync (key) { storage.delete(key) }
  }
}

/** wx.getUserInfo() as a promise. */
export function getUserInfo (wx) {
  return new Promise((resolve, reject) => wx.getUserInfo({ success: resolve, fail: reject }))
}
