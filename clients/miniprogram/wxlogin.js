// wxlogin for mini programs: log in through a wxlogin server, call your APIs with its token,
// and decrypt getUserInfo-style data. Plain ES module, no dependencies, no build step.
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
// - decrypt(): sends encryptedData/iv (and rawData/signature) to POST /v1/decrypt.

const DEFAULT_STORAGE_KEY = 'wxlogin.session'
const DEFAULT_RETRY_AFTER_MS = 500
const MAX_RETRY_AFTER_MS = 10000
// wx.login() codes WeChat refuses or that were used already: get a fresh one (once).
const FRESH_CODE_ERRCODES = [40029, 40163]
// What a session_key replaced by a wx.login() yields: -41003 "cannot decrypt", or -41005
// "signature does not match sha1(rawData + session_key)" when rawData/signature were sent.
const ERRCODES_STALE_KEY = [-41003, -41005]

/** An error answer of the wxlogin server (or a login that could not finish). */
export class WxLoginError extends Error {
  constructor (message, { status, errcode, errmsg, staleData = false } = {}) {
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

  /** One code, exchanged: POST /v1/login, then the ticket while the answer is 202. */
  async function exchange (code) {
    const deadline = Date.now() + maxLoginWaitMs
    let res = await http('POST', '/v1/login', appid ? { appid, code } : { code })
    while (res.statusCode === 202) {
      const ticket = res.data && res.data.ticket
      if (typeof ticket !== 'string') throw errorFrom(res, 'login: 202 without a ticket')
      const wait = Math.min(MAX_RETRY_AFTER_MS,
        Math.max(0, Number(res.data.retry_after_ms) || DEFAULT_RETRY_AFTER_MS))
      if (Date.now() + wait > deadline) {
        throw new WxLoginError(`login: not finished after ${maxLoginWaitMs} ms`, { status: 202, errcode: -1 })
      }
      await sleep(wait)
      res = await http('GET', `/v1/login/${encodeURIComponent(ticket)}`)
    }
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
    if (res.statusCode === 401) {
      token = await relogin(token)
      loggedIn = true
      if (fetchData) body = decryptBody(await fetchData())
      res = await http('POST', '/v1/decrypt', body, token)
    }
    if (res.statusCode === 200) return res.data
    const err = errorFrom(res, 'decrypt')
    if (ERRCODES_STALE_KEY.includes(err.errcode) && loggedIn && !fetchData) {
      err.staleData = true
      err.message += ': the data was obtained before this login, whose wx.login() changed the ' +
        'session_key; get the data again and call decrypt() again'
    }
    throw err
  }

  /** Ends the session on the server (POST /v1/logout) and forgets it here. */
  async function logout () {
    const token = getToken()
    clearSession()
    if (!token) return
    const res = await http('POST', '/v1/logout', undefined, token)
    if (res.statusCode !== 204 && res.statusCode !== 401) throw errorFrom(res, 'logout')
  }

  return { login, request, decrypt, logout, getToken, clearSession }
}
