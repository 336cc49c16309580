package client

import "time"

// RetryWait exposes Run's wait after failure number n (and the part of
// it a Save cannot cut short) to the package's external tests.
func (e *Engine) RetryWait(err error, n int) (wait, floor time.Duration) { return e.retryWait(err, n) }
