# A real replica (Rscript running serve_from_env) against a ROUTER socket played by the test.

PO <- pbdZMQ::ZMQ.PO()$POLLIN

receive <- function(router, timeout_ms = 10000L) {
  pbdZMQ::zmq.poll(c(router), c(PO), timeout = timeout_ms)
  if (bitwAnd(pbdZMQ::zmq.poll.get.revents(1L), PO) == 0L) stop("no message from the replica")
  pbdZMQ::zmq.recv.multipart(router, unserialize = FALSE)
}

# Receives until a message of `type` arrives; counts the heartbeats received meanwhile.
receive_type <- function(router, type) {
  heartbeats <- 0L
  repeat {
    frames <- receive(router)
    got <- read_u32(frames[[3]])
    if (got == type) return(list(frames = frames, heartbeats = heartbeats))
    if (got == MSG_HEARTBEAT) {  # answered as the frontend does: keep-alive
      heartbeats <- heartbeats + 1L
      pbdZMQ::zmq.send.multipart(router, list(frames[[1]], raw(0), u32(4L), u32(2L), u32(0L)),
                                 serialize = FALSE)
    }
  }
}

send_predict <- function(router, identity, msg_id, inputs) {
  data <- lapply(inputs, writeBin, con = raw(), endian = "little")
  header <- u64_array(c(3, length(data), vapply(data, length, 0L)))
  pbdZMQ::zmq.send.multipart(router, c(list(identity, raw(0), u32(4L), u32(1L), u32(msg_id),
                                            u32(0L), u64_array(length(header)), header),
                                       list(do.call(c, data))), serialize = FALSE)
}

outputs_of <- function(frames) {
  sizes <- read_u64_array(frames[[6]])[-1]
  blob <- frames[[7]]
  ends <- cumsum(sizes)
  vapply(seq_along(sizes), function(i) rawToChar(blob[(ends[i] - sizes[i] + 1):ends[i]]), "")
}

test_that("the replica registers, answers, reports errors, heartbeats through long batches", {
  f <- function(inputs) {
    vapply(inputs, function(x) {
      if (length(x) == 3) stop("bad input of length 3")
      if (x[1] < 0) Sys.sleep(0.05)
      sum(x)
    }, 0)
  }
  bundle <- tempfile("bundle")
  dir.create(bundle)
  save_model(f, c(1, 2), file.path(bundle, "func.rds"), verify = FALSE)

  context <- pbdZMQ::zmq.ctx.new()
  router <- pbdZMQ::zmq.socket(context, pbdZMQ::ZMQ.ST()$ROUTER)
  pbdZMQ::zmq.setsockopt(router, pbdZMQ::ZMQ.SO()$LINGER, 0L)
  port <- NA
  for (candidate in sample(20000:60000, 20)) {
    if (isTRUE(tryCatch(pbdZMQ::zmq.bind(router, sprintf("tcp://127.0.0.1:%d", candidate)),
                        error = function(e) -1L) != -1L)) {
      port <- candidate
      break
    }
  }
  expect_false(is.na(port))
  log <- tempfile(fileext = ".log")
  env <- c(R_LIBS = paste(.libPaths(), collapse = ":"), CLIPPER_MODEL_NAME = "m",
           CLIPPER_MODEL_VERSION = "1", CLIPPER_PORT = port, CLIPPER_MODEL_PATH = bundle,
           CLIPPER_READY_FILE = file.path(bundle, "ready"), CLIPPER_HEARTBEAT_INTERVAL_S = "0.2")
  command <- sprintf("%s %s --vanilla -e 'Rclipper::serve_from_env()' > %s 2>&1 & echo $!",
                     paste0(names(env), "=", shQuote(env), collapse = " "), rscript(), log)
  passed <- FALSE
  pid <- as.integer(system(command, intern = TRUE))
  on.exit({
    if (!isTRUE(passed)) cat(readLines(log), sep = "\n")
    tools::pskill(pid, tools::SIGKILL)
    pbdZMQ::zmq.close(router)
    pbdZMQ::zmq.ctx.destroy(context)
  })

  first <- receive(router)
  identity <- first[[1]]
  expect_identical(first[-1], heartbeat_message())
  pbdZMQ::zmq.send.multipart(router, list(identity, raw(0), u32(4L), u32(2L), u32(1L)),
                             serialize = FALSE)
  registration <- receive_type(router, MSG_NEW_CONTAINER)$frames
  expect_identical(registration[-1], new_container_message("m", "1", "doubles", 4L))
  expect_true(file.exists(file.path(bundle, "ready")))

  send_predict(router, identity, 5L, list(c(1, 2), 3.5, c(10, 20)))
  reply <- receive_type(router, MSG_CONTAINER_CONTENT)$frames
  expect_identical(reply[[4]], u32(5L))
  expect_identical(outputs_of(reply), c("3", "3.5", "30"))

  send_predict(router, identity, 6L, list(1, c(1, 2, 3)))
  error <- receive_type(router, MSG_ERROR)$frames
  expect_identical(error[[4]], u32(6L))
  expect_match(rawToChar(error[[5]]), "R error in model m:1: .*bad input of length 3")

  # 30 inputs x 50 ms = 1.5 s, heartbeat interval 0.2 s: heartbeats flow between chunks
  send_predict(router, identity, 7L, as.list(-as.numeric(1:30)))
  long <- receive_type(router, MSG_CONTAINER_CONTENT)
  expect_identical(outputs_of(long$frames), as.character(-(1:30)))
  expect_gte(long$heartbeats, 4L)

  tools::pskill(pid, tools::SIGINT)
  goodbye <- receive_type(router, MSG_GOODBYE)$frames
  expect_identical(goodbye[-1], goodbye_message())
  Sys.sleep(0.5)
  expect_false(file.exists(file.path(bundle, "ready")))
  passed <- TRUE
})
