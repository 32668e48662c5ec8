// The real services of one test file, and clients of them: `useStack()` starts a simulator and a
// wxlogin before the file's first test (harness.js) and stops them after its last, and
// `stack.setup()` makes a fake `wx` of a user (a new one by default) with a client on it.

import { before, after } from 'node:test'

import { createClient } from '../wxlogin.js'
import { fakeWx } from './fake-wx.js'
import { startStack } from './harness.js'

/**
 * Registers the file's before/after hooks; the returned object gains the stack's `api`, `sim`,
 * `logs()` once started. `users` prefixes the names `setup()` gives new users.
 */
export function useStack ({ env = {}, users = 'js-user' } = {}) {
  let count = 0
  const stack = {
    setup (user = `${users}-${++count}`) {
      const wx = fakeWx({ sim: stack.sim, user })
      return { wx, client: createClient({ baseUrl: stack.api, wx }), user }
    }
  }
  let started = null
  before(async () => {
    started = await startStack({ env })
    Object.assign(stack, { api: started.api, sim: started.sim, logs: started.logs })
  })
  after(async () => {
    if (started) await started.stop()
  })
  return stack
}
