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

read_if_there <- function(path) if (file.exists(path)) readLines(path) else character(0)

# Starts a replica of `f` (Rscript running serve_from_env) against a ROUTER socket played by
# the test. Its exit status is written to `status_file`; `stop(passed)` cleans up (printing
# the replica's log unless `passed`).
start_replica <- function(f, example) {
  bundle <- tempfile("bundle")
  dir.create(bundle)
  save_model(f, example, file.path(bundle, "func.rds"), verify = FALSE)
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
  pid_file <- tempfile(fileext = ".pid")
  status_file <- tempfile(fileext = ".status")
  env <- c(R_LIBS = paste(.libPaths(), collapse = ":"), CLIPPER_MODEL_NAME = "m",
           CLIPPER_MODEL_VERSION = "1", CLIPPER_PORT = port, CLIPPER_MODEL_PATH = bundle,
           CLIPPER_READY_FILE = file.path(bundle, "ready"), CLIPPER_HEARTBEAT_INTERVAL_S = "0.2")
  script <- tempfile(fileext = ".sh")
  writeLines(c(sprintf("%s %s --vanilla -e 'Rclipper::serve_from_env()' &",
                       paste0(names(env), "=", shQuote(env), collapse = " "), rscript()),
               sprintf("echo $! > %s", pid_file), "wait $!",
               sprintf("echo $? > %s", status_file)), script)
  system(sprintf("sh %s > %s 2>&1 &", script, log))
  for (i in 1:100) if (length(read_if_there(pid_file))) break else Sys.sleep(0.05)
  pid <- as.integer(readLines(pid_file))
  list(router = router, bundle = bundle, pid = pid, status_file = status_file,
       stop = function(passed) {
         if (!isTRUE(passed)) cat(readLines(log), sep = "\n")
         tools::pskill(pid, tools::SIGKILL)
         pbdZMQ::zmq.close(router)
         pbdZMQ::zmq.ctx.destroy(context)
       })
}

# Receives the replica's first heartbeat (from a socket other than `old`), asks it to
# register, returns its identity.
register <- function(router, old = NULL) {
  repeat {
    first <- receive(router)
    if (!identical(first[[1]], old)) break
  }
  expect_identical(first[-1], heartbeat_message())
  pbdZMQ::zmq.send.multipart(router, list(first[[1]], raw(0), u32(4L), u32(2L), u32(1L)),
                             serialize = FALSE)
  registration <- receive_type(router, MSG_NEW_CONTAINER)$frames
  expect_identical(registration[-1], new_container_message("m", "1", "doubles", 4L))
  first[[1]]
}

frontend_goodbye <- function(router, identity) {  # "you are dropped" (RPC v4)
  pbdZMQ::zmq.send.multipart(router, list(identity, raw(0), u32(4L), u32(MSG_GOODBYE)),
                             serialize = FALSE)
}

test_that("the replica registers, answers, reports errors, heartbeats through long batches", {
  f <- function(inputs) {
    vapply(inputs, function(x) {
      if (length(x) == 3) stop("bad input of length 3")
      if (x[1] < 0) Sys.sleep(0.05)
      sum(x)
    }, 0)
  }
  replica <- start_replica(f, c(1, 2))
  router <- replica$router
  passed <- FALSE
  on.exit(replica$stop(passed))

  identity <- register(router)
  expect_true(file.exists(file.path(replica$bundle, "ready")))

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

  # a goodbye between batches: the replica reconnects with a new socket and registers again
  # at once (not after 3 s of silence)
  frontend_goodbye(router, identity)
  started <- now_s()
  again <- register(router, old = identity)
  expect_lt(now_s() - started, 2)
  send_predict(router, again, 8L, list(c(2, 2)))
  expect_identical(outputs_of(receive_type(router, MSG_CONTAINER_CONTENT)$frames), "4")

  tools::pskill(replica$pid, tools::SIGINT)
  goodbye <- receive_type(router, MSG_GOODBYE)$frames
  expect_identical(goodbye[-1], goodbye_message())
  Sys.sleep(0.5)
  expect_false(file.exists(file.path(replica$bundle, "ready")))
  passed <- TRUE
})

test_that("a goodbye while the model runs makes the replica exit with status 75", {
  f <- function(inputs) vapply(inputs, function(x) { Sys.sleep(0.3); x[1] }, 0)
  replica <- start_replica(f, 1)
  router <- replica$router
  passed <- FALSE
  on.exit(replica$stop(passed))
  identity <- register(router)
  send_predict(router, identity, 9L, as.list(as.numeric(1:20)))  # 6 s, in chunks
  frontend_goodbye(router, identity)  # the frontend found it hung
  for (i in 1:100) if (length(read_if_there(replica$status_file))) break else Sys.sleep(0.1)
  expect_identical(read_if_there(replica$status_file), as.character(RETIRED_STATUS))
  expect_false(file.exists(file.path(replica$bundle, "ready")))
  passed <- TRUE
})
