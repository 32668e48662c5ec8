// A stand-in for the mini program's `wx` object, backed by real services:
// - wx.login() mints a real code from the simulator (POST {sim}/sim/login), unless codes were
//   queued with `queueCodes()` (to hand out a used or invalid code on purpose);
// - wx.request() makes a real HTTP call (fetch), with wx.request's conventions: `header`,
//   JSON `data`, `success` for any HTTP status, `fail` only when there is no answer;
// - wx.getUserInfo() returns what the simulator encrypts under the user's current session_key
//   (POST {sim}/sim/userinfo);
// - tapPhoneButton() is the user tapping <button open-type="getPhoneNumber">: it mints a real
//   phone code at the simulator (POST {sim}/sim/phone) and resolves to the bindgetphonenumber
//   event and the number the simulator will answer for it;
// - storage is an in-memory map with wx.setStorageSync's semantics ('' when missing).
// Every call is recorded in `calls`, in order.

import { APPID } from './harness.js'

export function fakeWx ({ sim, user, appid = APPID }) {
  const storage = new Map()
  const queued = []
  const calls = { login: 0, getUserInfo: 0, requests: [], order: [] }

  /** POSTs `{appid, user}` to a control endpoint of the simulator; the answer's JSON. */
  async function simPost (path) {
    const r = await fetch(`${sim}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ appid, user })
    })
    const body = await r.json()
    if (r.status !== 200) throw new Error(`${path}: ${r.status} ${JSON.stringify(body)}`)
    return body
  }

  async function mint () {
    return (await simPost('/sim/login')).code
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
      simPost('/sim/userinfo').then(
        (body) => success(Object.assign({ userInfo: JSON.parse(body.rawData), errMsg: 'getUserInfo:ok' }, body)),
        (e) => fail({ errMsg: `getUserInfo:fail ${e.message}` }))
    },

    async tapPhoneButton () {
      calls.order.push('tap getPhoneNumber')
      const body = await simPost('/sim/phone')
      return {
        event: { type: 'getphonenumber', detail: { errMsg: 'getPhoneNumber:ok', code: body.code } },
        number: {
          phoneNumber: body.phone_number,
          purePhoneNumber: body.pure_phone_number,
          countryCode: body.country_code
        }
      }
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
