// upload.js uploads one file to a fieldsync server's tus endpoint with
// tus-js-client, the independent tus client the server is tested against.
//
//   node upload.js --endpoint URL --file PATH --sha256 HEX [--chunk-size N]
//                  [--content-type TYPE] [--abort-after N] [--upload-url URL]
//
// tus-js-client is loaded from $FIELDSYNC_TUSJS_DIR/node_modules.
// --abort-after N stops the upload once N bytes have been sent (in the
// middle of a PATCH when the progress events allow, else at the end of
// the chunk) and exits with status 3; --upload-url resumes that upload in
// a new process. Every request, answer and outcome is printed to stdout
// as one JSON object per line, for the test to check.
'use strict'

const fs = require('fs')
const path = require('path')

function parseArgs (argv) {
  const opts = { chunkSize: 64 * 1024, abortAfter: 0 }
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]
    const value = argv[i + 1]
    if (value === undefined) throw new Error(`${key}: missing value`)
    switch (key) {
      case '--endpoint': opts.endpoint = value; break
      case '--file': opts.file = value; break
      case '--sha256': opts.sha256 = value; break
      case '--chunk-size': opts.chunkSize = Number(value); break
      case '--content-type': opts.contentType = value; break
      case '--abort-after': opts.abortAfter = Number(value); break
      case '--upload-url': opts.uploadUrl = value; break
      default: throw new Error(`unknown option ${key}`)
    }
  }
  if (!opts.endpoint || !opts.file || !opts.sha256) {
    throw new Error('--endpoint, --file and --sha256 are required')
  }
  return opts
}

function emit (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

function main () {
  const opts = parseArgs(process.argv.slice(2))
  const dir = process.env.FIELDSYNC_TUSJS_DIR
  if (!dir) throw new Error('FIELDSYNC_TUSJS_DIR is not set')
  const tus = require(path.join(dir, 'node_modules', 'tus-js-client'))
  const data = fs.readFileSync(opts.file)
  const metadata = { sha256: opts.sha256, filename: path.basename(opts.file) }
  if (opts.contentType) metadata.content_type = opts.contentType

  let aborted = false
  let upload = null
  const abort = (sent) => {
    if (aborted || !opts.abortAfter || sent < opts.abortAfter) return
    aborted = true
    upload.abort(false).then(() => {
      emit({ event: 'aborted', url: upload.url, sent })
      process.exit(3)
    })
  }

  upload = new tus.Upload(data, {
    endpoint: opts.endpoint,
    uploadUrl: opts.uploadUrl || null,
    chunkSize: opts.chunkSize,
    metadata,
    retryDelays: null,
    storeFingerprintForResuming: false,
    onBeforeRequest (req) {
      const offset = req.getHeader('Upload-Offset')
      emit({ event: 'request', method: req.getMethod(), offset: offset === undefined ? null : Number(offset) })
    },
    onAfterResponse (req, res) {
      const offset = res.getHeader('Upload-Offset')
      emit({
        event: 'response',
        method: req.getMethod(),
        status: res.getStatus(),
        offset: offset === undefined || offset === null ? null : Number(offset),
        location: res.getHeader('Location') || null
      })
    },
    onProgress (sent) { abort(sent) },
    onChunkComplete (chunkSize, accepted) {
      emit({ event: 'chunk', size: chunkSize, accepted })
      abort(accepted)
    },
    onSuccess () {
      emit({ event: 'done', url: upload.url })
      process.exit(0)
    },
    onError (err) {
      if (aborted) return
      emit({ event: 'error', message: String(err) })
      process.exit(1)
    }
  })
  upload.start()
}

try {
  main()
} catch (err) {
  emit({ event: 'error', message: String(err) })
  process.exit(2)
}
