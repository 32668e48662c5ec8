// Types of wxlogin.js, the mini program side of wxlogin.

/** The part of the `wx` object the helper uses (the real one, or a stand-in in tests). */
export interface WxLike {
  login(options: {
    success(res: { code: string; errMsg?: string }): void;
    fail(err: { errMsg?: string }): void;
  }): void;
  request(options: WxRequestOptions & {
    success(res: WxResponse): void;
    fail(err: { errMsg?: string }): void;
  }): unknown;
  getStorageSync(key: string): any;
  setStorageSync(key: string, value: any): void;
  removeStorageSync(key: string): void;
}

/** What `wx.request()` takes, minus the callbacks. A relative `url` goes to `apiBaseUrl`. */
export interface WxRequestOptions {
  url: string;
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD' | 'OPTIONS';
  data?: string | object | ArrayBuffer;
  header?: Record<string, string>;
  dataType?: 'json' | string;
  responseType?: 'text' | 'arraybuffer';
  timeout?: number;
  [option: string]: unknown;
}

/** What `wx.request()` answers with. */
export interface WxResponse<T = any> {
  statusCode: number;
  data: T;
  header: Record<string, string>;
  errMsg?: string;
}

export interface ClientOptions {
  /** The wxlogin server, e.g. `https://login.example.com`. */
  baseUrl: string;
  /** Needed only when the server serves several apps. */
  appid?: string;
  /** The `wx` object; default: the global `wx`. */
  wx?: WxLike;
  /** Storage key of the session; default `wxlogin.session`. */
  storageKey?: string;
  /** Give up following `202` tickets after this many ms; default 60000. */
  maxLoginWaitMs?: number;
  /** Where relative `request()` URLs go; default `baseUrl`. */
  apiBaseUrl?: string;
}

/** `encryptedData`/`iv` (and optionally `rawData`/`signature`) of a getUserInfo-style result. */
export interface EncryptedDetail {
  encryptedData: string;
  iv: string;
  rawData?: string;
  signature?: string;
  [field: string]: unknown;
}

/** What `POST /v1/decrypt` answers: the decrypted object. */
export interface DecryptedData {
  openId?: string;
  unionId?: string;
  nickName?: string;
  gender?: number;
  language?: string;
  city?: string;
  province?: string;
  country?: string;
  avatarUrl?: string;
  phoneNumber?: string;
  purePhoneNumber?: string;
  countryCode?: string;
  watermark: { appid: string; timestamp: number };
  [field: string]: unknown;
}

/** `detail` of a `bindgetphonenumber` event (`<button open-type="getPhoneNumber">`). */
export interface PhoneNumberDetail {
  /** `'getPhoneNumber:ok'` when the user shared the number; anything else: refused. */
  errMsg?: string;
  /** The single-use phone code (base library 2.21.2+). */
  code?: string;
  [field: string]: unknown;
}

/** What `getPhoneNumber()` resolves to. */
export interface PhoneNumber {
  /** With the country prefix for numbers outside mainland China. */
  phoneNumber: string;
  /** Never with a country prefix. */
  purePhoneNumber: string;
  /** Always a string, e.g. `'86'`. */
  countryCode: string;
}

/**
 * What the caller can do about a `WxLoginError`, when the helper knows:
 * - `'tap_again'` (`getPhoneNumber()`): that phone code is dead or may be spent, or the session
 *   had ended; ask the user to tap the button again and pass the new event;
 * - `'denied'` (`getPhoneNumber()`): the user did not share the number; nothing was sent;
 * - `'stale_data'` (`decrypt()`): the data predates a login; get it again.
 */
export type WxLoginErrorCode = 'tap_again' | 'denied' | 'stale_data';

/** An error answer of the wxlogin server, or a login that could not finish. */
export class WxLoginError extends Error {
  name: 'WxLoginError';
  /** HTTP status (0 when there was no answer). */
  status: number;
  /** The server's errcode, e.g. 40163 (code used), 40001 (bad token), -41003 (cannot decrypt). */
  errcode?: number;
  /** The server's errmsg: show or log it, never parse it. */
  errmsg?: string;
  /** `decrypt()` only: the data predates the login `decrypt()` had to make; get it again. */
  staleData: boolean;
  /** What to do about it, when the helper knows; branch on this. */
  code?: WxLoginErrorCode;
}

export interface Client {
  /**
   * `wx.login()`, then `POST /v1/login`, following `202` tickets; one fresh code on
   * 40029/40163. Stores and resolves to the token. Concurrent calls share one login.
   */
  login(): Promise<string>;
  /** `wx.request()` with the bearer token; on 401, logs in again once and repeats the call. */
  request<T = any>(options: WxRequestOptions): Promise<WxResponse<T>>;
  /**
   * Decrypts getUserInfo-style data on the server. Log in BEFORE getting the data: a
   * `wx.login()` in between replaces the session_key and the data no longer decrypts. Pass a
   * function to let `decrypt()` get the data after any login it has to make. On `401`, or
   * `409 87009` (a session-key check found the session's key replaced), it logs in again once.
   */
  decrypt(
    source: EncryptedDetail | (() => EncryptedDetail | Promise<EncryptedDetail>),
  ): Promise<DecryptedData>;
  /**
   * The user's phone number from a `bindgetphonenumber` event (or its `detail`), through
   * `POST /v1/phone` (logging in first if there is no session), following `202` tickets. The
   * phone code is sent once and never again: rejects with `code: 'tap_again'` on 40029, 503 -1,
   * 40163, a lost ticket or no answer, and on 401 (after logging in again); with
   * `code: 'denied'` and no request when `errMsg` is not `'getPhoneNumber:ok'`. The same event
   * again gets the same number (the server exchanges each code once).
   */
  getPhoneNumber(event: { detail: PhoneNumberDetail } | PhoneNumberDetail): Promise<PhoneNumber>;
  /**
   * `GET /v1/session-key`: whether WeChat still holds the session's session_key. `false` too
   * when there is no session (nothing sent) or it has ended: call `login()` before getting data
   * to decrypt.
   */
  checkSessionKey(): Promise<boolean>;
  /** `POST /v1/logout`, and forgets the token. */
  logout(): Promise<void>;
  /** The stored token, or null when there is none or it has expired. */
  getToken(): string | null;
  /** Forgets the stored token (only if it is `token`, when given). */
  clearSession(token?: string): void;
}

export function createClient(options: ClientOptions): Client;
