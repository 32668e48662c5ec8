// wxlogin for mini programs: log in through a wxlogin server, call your APIs with its token,
// decrypt getUserInfo-style data and get the phone number of a getPhoneNumber button. Plain ES
// module, no dependencies, no build step.
//
//   import { createClient } from './wxlogin.js'
//   const auth = createClient({ baseUrl: 'https://login.example.com' })
//   await auth.login()                                   // on launch, before any user data
//   const res = await auth.request({ url: '/api/orders' }) // Authorization: Bearer added
//
// What it does for you, and why (see README.md):
// - login(): wx.login() -> POST /v1/login; a 202 answer is followed through GET /v1/login/{ticket}
//   waiting the server's retry_after_ms; 40029 (invalid code) or 40163 (code already used) gets
//   ONE fresh code from wx.login() and one more try (a code is single-use: never resend it).
//   Concurrent calls share one login.
// - The token is the only thing kept (wx.setStorageSync). No openid is ever kept or sent as a
//   credential: an openid is not a secret, and whoever can send one would be that user.
// - request(): wx.request() with `Authorization: Bearer <token>`; on 401 it logs in again once
//   and repeats the call.
// - decrypt(): sends encryptedData/iv (and rawData/signature) to POST /v1/decrypt; 409 87009
//   (the session's session_key was replaced) is a dead session for it: it logs in again once.
// - getPhoneNumber(event): for bindgetphonenumber; POST /v1/phone with the event's phone code,
//   following 202 tickets. A phone code is single-use and each exchange is billed: it is sent
//   once, never again (not after a 40029, a 503, or a 401 that made it log in again); those
//   reject with `code: 'tap_again'`: ask the user to tap the button again (a new code).
// - checkSessionKey(): GET /v1/session-key, whether WeChat still holds the session's key.

const DEFAULT_STORAGE_KEY = 'wxlogin.session'
const DEFAULT_RETRY_AFTER_MS = 500
const MAX_RETRY_AFTER_MS = 10000
// wx.login() codes WeChat refuses or that were used already: get a fresh one (once).
const FRESH_CODE_ERRCODES = [40029, 40163]
// What a session_key replaced by a wx.login() yields: -41003 "cannot decrypt", or -41005
// "signature does not match sha1(rawData + session_key)" when rawData/signature were sent.
const ERRCODES_STALE_KEY = [-41003, -41005]
// /v1/decrypt's "a session-key check found this session's key replaced": log in again.
const ERRCODE_KEY_REPLACED = 87009
const PHONE_OK = 'getPhoneNumber:ok'

/** An error answer of the wxlogin server (or a login that could not finish). */
export class WxLoginError extends Error {
  constructor (message, { status, errcode, errmsg, staleData = false, code } = {}) {
    super(message)
    this.name = 'WxLoginError'
    /** HTTP status of the answer (0 when there was none). */
    this.status = status || 0
    /** The server's errcode (WeChat's vocabulary where one fits). */
    this.errcode = errcode
    /** The server's errmsg: show or log it, never parse it. */
    this.errmsg = errmsg
    /** decrypt() only: the data was encrypted under a session_key that a login replaced. */
    this.staleData = staleData
    /**
     * What the caller can do, when the helper knows: 'stale_data' (decrypt(): get the data
     * again), 'tap_again' (getPhoneNumber(): that phone code is spent or dead, ask for another
     * tap), 'denied' (getPhoneNumber(): the user did not share the number). Else undefined.
     */
    this.code = code || (staleData ? 'stale_data' : undefined)
  }
}

/** Calls a callback-style wx API (success/fail) as a promise. */
function call (w, api, options) {
  return new Promise((resolve, reject) => {
    w[api](Object.assign({}, options, {
      success: resolve,
      fail: (err) => reject(err instanceof Error ? err : new WxLoginError(
        (err && err.errMsg) || 'wx call failed', { errmsg: err && err.errMsg }))
    }))
  })
}

function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Marks `err` as "ask the user to tap the button again" (getPhoneNumber()). */
function tapAgain (err) {
  err.code = 'tap_again'
  if (!/tap the button again/.test(err.message)) err.message += ': ask the user to tap the button again'
  return err
}

function errorFrom (res, what) {
  const data = res && typeof res.data === 'object' && res.data !== null ? res.data : {}
  const errcode = typeof data.errcode === 'number' ? data.errcode : undefined
  const errmsg = typeof data.errmsg === 'string' ? data.errmsg : undefined
  return new WxLoginError(
    `${what}: HTTP ${res.statusCode}` + (errcode !== undefined ? ` errcode ${errcode}` : '') +
      (errmsg ? ` (${errmsg})` : ''),
    { status: res.statusCode, errcode, errmsg })
}

/**
 * Creates a client bound to one wxlogin server.
 *
 * @param {object} options
 * @param {string} options.baseUrl  the wxlogin server, e.g. 'https://login.example.com'
 * @param {string} [options.appid]  needed only when the server serves several apps
 * @param {object} [options.wx]  the wx object (default: the global `wx`)
 * @param {string} [options.storageKey]  where the session is kept (default 'wxlogin.session')
 * @param {number} [options.maxLoginWaitMs]  give up following 202 tickets after this (60000)
 * @param {string} [options.apiBaseUrl]  where relative request() URLs go (default: baseUrl)
 */
export function createClient (options) {
  const opts = options || {}
  if (typeof opts.baseUrl !== 'string' || opts.baseUrl === '') {
    throw new TypeError('createClient: baseUrl is required')
  }
  const baseUrl = opts.baseUrl.replace(/\/+$/, '')
  const apiBaseUrl = (opts.apiBaseUrl || baseUrl).replace(/\/+$/, '')
  const storageKey = opts.storageKey || DEFAULT_STORAGE_KEY
  const maxLoginWaitMs = opts.maxLoginWaitMs || 60000
  const appid = opts.appid
  const wxApi = () => {
    const w = opts.wx || (typeof wx !== 'undefined' ? wx : undefined) // eslint-disable-line no-undef
    if (!w) throw new TypeError('wxlogin: no wx object (pass options.wx outside a mini program)')
    return w
  }

  function http (method, path, data, token) {
    const header = {}
    if (data !== undefined) header['content-type'] = 'application/json'
    if (token) header.Authorization = `Bearer ${token}`
    return call(wxApi(), 'request', { url: baseUrl + path, method, data, header, dataType: 'json' })
  }

  /** The stored token, or null when there is none or it has expired. */
  function getToken () {
    const s = wxApi().getStorageSync(storageKey)
    if (!s || typeof s.token !== 'string') return null
    if (typeof s.expiresAt === 'number' && Date.now() >= s.expiresAt) return null
    return s.token
  }

  function save (token, expiresIn) {
    // Only the token and when it expires: never the openid, never the login code.
    wxApi().setStorageSync(storageKey, {
      token,
      expiresAt: Date.now() + Math.max(0, Number(expiresIn) || 0) * 1000
    })
  }

  /** Forgets the stored session (or only `token`'s, if another one replaced it meanwhile). */
  function clearSession (token) {
    const s = wxApi().getStorageSync(storageKey)
    if (token === undefined || (s && s.token === token)) wxApi().removeStorageSync(storageKey)
  }

  /**
   * Follows `202` answers: waits each one's retry_after_ms, then GETs `pollPath(ticket)` (with
   * the latest ticket), until another answer comes or `deadline` would pass.
   */
  async function follow (res, what, pollPath, token, deadline) {
    while (res.statusCode === 202) {
      const ticket = res.data && res.data.ticket
      if (typeof ticket !== 'string') throw errorFrom(res, `${what}: 202 without a ticket`)
      const wait = Math.min(MAX_RETRY_AFTER_MS,
        Math.max(0, Number(res.data.retry_after_ms) || DEFAULT_RETRY_AFTER_MS))
      if (Date.now() + wait > deadline) {
        throw new WxLoginError(`${what}: not finished after ${maxLoginWaitMs} ms`, { status: 202, errcode: -1 })
      }
      await sleep(wait)
      res = await http('GET', pollPath(encodeURIComponent(ticket)), undefined, token)
    }
    return res
  }

  /** One code, exchanged: POST /v1/login, then the ticket while the answer is 202. */
  async function exchange (code) {
    const deadline = Date.now() + maxLoginWaitMs
    const posted = await http('POST', '/v1/login', appid ? { appid, code } : { code })
    const res = await follow(posted, 'login', (t) => `/v1/login/${t}`, undefined, deadline)
    if (res.statusCode === 200 && res.data && typeof res.data.token === 'string') {
      save(res.data.token, res.data.expires_in)
      return res.data.token
    }
    throw errorFrom(res, 'login')
  }

  async function freshLogin () {
    let freshCodes = 1
    for (;;) {
      const { code } = await call(wxApi(), 'login', {})
      try {
        return await exchange(code)
      } catch (e) {
        if (e instanceof WxLoginError && FRESH_CODE_ERRCODES.includes(e.errcode) && freshCodes > 0) {
          freshCodes -= 1
          continue
        }
        throw e
      }
    }
  }

  let inflight = null
  /** Logs in with a fresh wx.login() code; resolves to the new token. Calls share one login. */
  function login () {
    if (!inflight) {
      inflight = freshLogin().finally(() => { inflight = null })
    }
    return inflight
  }

  /** After `stale` was refused: the token someone else got meanwhile, or a new login. */
  function relogin (stale) {
    const current = getToken()
    if (current && current !== stale) return Promise.resolve(current)
    clearSession(stale)
    return login()
  }

  async function ensureToken () {
    return getToken() || login()
  }

  function send (options, token) {
    const url = /^https?:\/\//.test(options.url) ? options.url : apiBaseUrl + options.url
    const header = Object.assign({}, options.header, { Authorization: `Bearer ${token}` })
    const rest = Object.assign({}, options)
    delete rest.success
    delete rest.fail
    delete rest.complete
    return call(wxApi(), 'request', Object.assign(rest, { url, header }))
  }

  /**
   * wx.request() with the bearer token; on 401, logs in again once and repeats the call.
   * Resolves with wx.request's answer ({ statusCode, data, header }) whatever its status, as
   * wx.request does; rejects when there is no answer or the login fails.
   */
  async function request (options) {
    if (!options || typeof options.url !== 'string') throw new TypeError('request: options.url is required')
    let token = await ensureToken()
    let res = await send(options, token)
    if (res.statusCode === 401) {
      token = await relogin(token)
      res = await send(options, token)
    }
    return res
  }

  function decryptBody (detail) {
    if (!detail || typeof detail.encryptedData !== 'string' || typeof detail.iv !== 'string') {
      throw new TypeError('decrypt: no encryptedData/iv in the data' +
        (detail && detail.errMsg ? ` (${detail.errMsg})` : ''))
    }
    const body = { encryptedData: detail.encryptedData, iv: detail.iv }
    if (typeof detail.rawData === 'string' && typeof detail.signature === 'string') {
      body.rawData = detail.rawData
      body.signature = detail.signature
    }
    return body
  }

  /**
   * Decrypts getUserInfo-style data on the server (POST /v1/decrypt) and resolves to the
   * decrypted object (openId, unionId, nickName, watermark, ...).
   *
   * `source` is the data itself (`e.detail` of a button event, or what wx.getUserInfo gave),
   * or a function returning it (or a promise of it).
   *
   * WeChat encrypts that data under the user's CURRENT session_key, and every wx.login() may
   * replace that key. Data obtained BEFORE a wx.login() therefore no longer decrypts after it
   * (-41003, or -41005 when the rawData signature is checked). So: call login() first (on
   * launch), then get the data, then decrypt it. If there is no session, decrypt() logs in
   * first; given a function, it then asks for the data, which is the safe order. Given data
   * obtained before that login, the server answers -41003/-41005 and the error has
   * `staleData: true`: get the data again (another tap) and call decrypt() again.
   */
  async function decrypt (source) {
    const fetchData = typeof source === 'function' ? source : null
    let loggedIn = false
    let token = getToken()
    if (!token) {
      token = await login()
      loggedIn = true
    }
    let body = decryptBody(fetchData ? await fetchData() : source)
    let res = await http('POST', '/v1/decrypt', body, token)
    // 401: the session ended; 409 87009: WeChat replaced its session_key. Either way a new login
    // (whose session_key is current) is what decrypts the data.
    if (res.statusCode === 401 || (res.statusCode === 409 && res.data && res.data.errcode === ERRCODE_KEY_REPLACED)) {
      token = await relogin(token)
      loggedIn = true
      if (fetchData) body = decryptBody(await fetchData())
      res = await http('POST', '/v1/decrypt', body, token)
    }
    if (res.statusCode === 200) return res.data
    const err = errorFrom(res, 'decrypt')
    if (ERRCODES_STALE_KEY.includes(err.errcode) && loggedIn && !fetchData) {
      err.staleData = true
      err.code = 'stale_data'
      err.message += ': the data was obtained before this login, whose wx.login() changed the ' +
        'session_key; get the data again and call decrypt() again'
    }
    throw err
  }

  /**
   * The user's phone number from a `bindgetphonenumber` event (or its `detail`): resolves to
   * `{ phoneNumber, purePhoneNumber, countryCode }` (countryCode a string).
   *
   * The event's `detail.code` is a single-use phone code whose exchange WeChat bills, so it is
   * posted once (POST /v1/phone, logging in first if there is no session) and never again by
   * this call. Passing the same event again is safe: the server answers the same session the
   * same number without a second exchange. Rejections with `code`:
   * - 'denied': `detail.errMsg` is not 'getPhoneNumber:ok' (the user refused); nothing is sent.
   * - 'tap_again': that code is dead or may be spent (400 40029, 503 -1, 409 40163, a ticket
   *   gone or not answered within maxLoginWaitMs, no answer at all), or the session had ended
   *   (401: it has logged in again, but does not send the code with the new session): ask the
   *   user to tap the button again, and call getPhoneNumber() with the new event.
   */
  async function getPhoneNumber (event) {
    const detail = event && typeof event === 'object' && event.detail ? event.detail : event
    const errMsg = detail && detail.errMsg
    if (typeof errMsg === 'string' && errMsg !== PHONE_OK) {
      throw new WxLoginError(`getPhoneNumber: the user did not share the number (${errMsg})`,
        { errmsg: errMsg, code: 'denied' })
    }
    if (!detail || typeof detail.code !== 'string' || detail.code === '') {
      throw new TypeError('getPhoneNumber: no detail.code in the event (it needs base library 2.21.2+)')
    }
    const deadline = Date.now() + maxLoginWaitMs
    const token = await ensureToken()
    let res
    try {
      const posted = await http('POST', '/v1/phone', { code: detail.code }, token)
      res = await follow(posted, 'getPhoneNumber', (t) => `/v1/phone/${t}`, token, deadline)
    } catch (e) {
      throw tapAgain(e instanceof WxLoginError ? e : new WxLoginError(
        `getPhoneNumber: no answer (${e && e.message})`, { errmsg: e && e.message }))
    }
    const data = res.data
    if (res.statusCode === 200 && data && typeof data.phoneNumber === 'string') {
      return {
        phoneNumber: data.phoneNumber,
        purePhoneNumber: data.purePhoneNumber,
        countryCode: String(data.countryCode)
      }
    }
    const err = errorFrom(res, 'getPhoneNumber')
    if (res.statusCode === 401) {
      await relogin(token)
      err.message += ': logged in again; a phone code is single-use, so it was not sent again'
      throw tapAgain(err)
    }
    const dead = (res.statusCode === 400 && err.errcode === 40029) ||
      (res.statusCode === 503 && err.errcode === -1) ||
      (res.statusCode === 409 && err.errcode === 40163) || res.statusCode === 404
    throw dead ? tapAgain(err) : err
  }

  /**
   * Whether WeChat still holds the session's session_key (GET /v1/session-key). `false` also
   * when there is no session (nothing is sent) or it has ended: call login() before getting
   * data to decrypt. (decrypt() logs in again by itself when the server knows the key replaced.)
   */
  async function checkSessionKey () {
    const token = getToken()
    if (!token) return false
    const res = await http('GET', '/v1/session-key', undefined, token)
    if (res.statusCode === 200 && res.data && typeof res.data.valid === 'boolean') return res.data.valid
    if (res.statusCode === 401) {
      clearSession(token)
      return false
    }
    throw errorFrom(res, 'checkSessionKey')
  }

  /** Ends the session on the server (POST /v1/logout) and forgets it here. */
  async function logout () {
    const token = getToken()
    clearSession()
    if (!token) return
    const res = await http('POST', '/v1/logout', undefined, token)
    if (res.statusCode !== 204 && res.statusCode !== 401) throw errorFrom(res, 'logout')
  }

  return { login, request, decrypt, getPhoneNumber, checkSessionKey, logout, getToken, clearSession }
}
