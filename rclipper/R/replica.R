# The model replica: a ZeroMQ DEALER that registers with the query frontend and
# answers predict requests (the same life cycle as clipper_core.runtime, see
# docs/model-runtime.md). R has one thread, so heartbeats cannot flow while the
# model runs; instead a batch is cut into chunks that each take about one heartbeat
# interval (from the measured time per input), with a heartbeat between chunks.
# Between chunks the replica also reads what the frontend sent: a goodbye there means
# the frontend found the model hung and dropped this replica, which then exits with
# RETIRED_STATUS so that its backend starts a new one (clipper_core.runtime does the
# same). A goodbye between batches makes it reconnect with a new socket.

# The exit status of a replica the frontend dropped as hung (clipper_core.runtime's).
RETIRED_STATUS <- 75L

log_line <- function(...) {
  message(format(Sys.time(), "%Y-%m-%dT%H:%M:%OS3"), " INFO rclipper-replica: ",
          sprintf(...))
}

now_s <- function() as.numeric(proc.time()[["elapsed"]])

new_replica <- function(model, name, version, input_type, rpc_version, heartbeat_interval) {
  state <- new.env(parent = emptyenv())
  state$model <- model
  state$name <- name
  state$version <- as.character(version)
  state$input_type <- input_type
  state$rpc_version <- as.integer(rpc_version)
  state$interval <- heartbeat_interval
  state$per_input_s <- NA_real_
  state$last_heartbeat <- now_s()
  state$unread <- list()  # messages received while the model ran
  state$last_read <- -Inf  # when the last of them was received
  state
}

send <- function(socket, frames) {
  last <- length(frames)
  for (i in seq_len(last - 1L)) {
    pbdZMQ::zmq.msg.send(frames[[i]], socket, flags = zmq_constants$SNDMORE, serialize = FALSE)
  }
  pbdZMQ::zmq.msg.send(frames[[last]], socket, flags = zmq_constants$BLOCK, serialize = FALSE)
}

receive <- function(socket) {
  frames <- list()
  repeat {
    frames[[length(frames) + 1L]] <- pbdZMQ::zmq.msg.recv(socket, flags = zmq_constants$BLOCK,
                                                          unserialize = FALSE)
    more <- pbdZMQ::zmq.getsockopt(socket, zmq_constants$RCVMORE, integer(1L))
    if (more != 1L) return(frames)
  }
}

heartbeat_if_due <- function(state, socket) {
  if (now_s() - state$last_heartbeat >= state$interval) {
    send(socket, heartbeat_message())
    state$last_heartbeat <- now_s()
  }
}

# The next message, waiting up to `timeout_ms`; NULL if none arrived.
poll_message <- function(socket, timeout_ms) {
  pollin <- zmq_constants$POLLIN
  pbdZMQ::zmq.poll(c(socket), c(pollin), timeout = timeout_ms, MC = zmq_constants$MC)
  if (bitwAnd(pbdZMQ::zmq.poll.get.revents(1L), pollin) != 0L) receive(socket)
}

is_goodbye <- function(frames) {
  length(frames) >= 3L && read_u32(frames[[3L]]) == MSG_GOODBYE
}

# Keeps what arrived while the model runs for later; signals `rclipper_dropped` on a
# goodbye (the frontend gave up on this batch).
read_while_predicting <- function(state, socket) {
  while (!is.null(frames <- poll_message(socket, 0L))) {
    if (is_goodbye(frames)) {
      stop(structure(class = c("rclipper_dropped", "condition"), list(
        message = "the frontend dropped this replica: the model did not answer in time",
        call = NULL)))
    }
    state$unread[[length(state$unread) + 1L]] <- frames
    state$last_read <- now_s()
  }
}

# Runs the model over `inputs` in chunks of about one heartbeat interval each, with a
# heartbeat between chunks. The first chunk is an eighth of the batch (at most what the
# last measured time per input allows), so a batch slower than the ones before it is
# noticed early; later chunks follow the time measured in this batch.
run_model <- function(state, socket, inputs) {
  n <- length(inputs)
  func <- state$model$func
  if (n <= 1L) return(encode_outputs(func(inputs), n))
  fits <- function() max(1L, as.integer(min(n, state$interval / max(state$per_input_s, 1e-6))))
  chunk <- if (is.na(state$per_input_s)) 1L else min(fits(), ceiling(n / 8))
  outputs <- character(n)
  done <- 0L
  while (done < n) {
    index <- seq.int(done + 1L, min(n, done + chunk))
    started <- now_s()
    outputs[index] <- encode_outputs(func(inputs[index]), length(index))
    state$per_input_s <- (now_s() - started) / length(index)
    chunk <- fits()
    done <- done + length(index)
    heartbeat_if_due(state, socket)
    if (done < n) read_while_predicting(state, socket)
  }
  outputs
}

handle_predict <- function(state, socket, rest, rpc_version) {
  request <- parse_predict_request(rest, rpc_version)
  reply <- tryCatch({
    input_type <- names(INPUT_TYPES)[INPUT_TYPES == request$input_type]
    if (!identical(input_type, state$input_type)) {
      stop(sprintf("this replica serves %s inputs, the request carries input type %d",
                   state$input_type, request$input_type))
    }
    inputs <- decode_inputs(input_type, request$sizes, request$data, state$model$input_class)
    response_message(request$msg_id, run_model(state, socket, inputs), state$rpc_version)
  }, error = function(e) {
    message_text <- sprintf("R error in model %s:%s: %s", state$name, state$version,
                            conditionMessage(e))
    log_line("%s", message_text)
    if (state$rpc_version >= RPC_VERSION) error_message(request$msg_id, message_text) else NULL
  })
  if (!is.null(reply)) send(socket, reply)
}

# Handles one message from the frontend; TRUE if it was a goodbye (reconnect anew).
handle_message <- function(state, socket, frames) {
  message <- parse_frontend_message(frames)
  if (message$type == MSG_GOODBYE) return(TRUE)
  if (message$type == MSG_HEARTBEAT) {
    if (length(message$rest) && read_u32(message$rest[[1L]]) == HEARTBEAT_REQUEST_METADATA) {
      send(socket, new_container_message(state$name, state$version, state$input_type,
                                         state$rpc_version,
                                         Sys.getenv("CLIPPER_REPLICA_SECRET")))
      log_line("Registered as %s:%s (%s inputs, RPC v%d)", state$name, state$version,
               state$input_type, state$rpc_version)
    }
  } else if (message$type == MSG_CONTAINER_CONTENT) {
    handle_predict(state, socket, message$rest, message$rpc_version)
  }
  FALSE
}

# Serves on one socket until the frontend is silent for `reconnect_after` seconds or
# says goodbye (then returns, to reconnect with a new socket).
serve_session <- function(state, socket, reconnect_after) {
  send(socket, heartbeat_message())
  state$last_heartbeat <- now_s()
  state$unread <- list()
  state$last_read <- -Inf
  connected <- FALSE
  last_message <- now_s()
  repeat {
    if (length(state$unread)) {
      frames <- state$unread[[1L]]
      state$unread <- state$unread[-1L]
    } else {
      wait_ms <- max(0L, as.integer(1000 * (state$interval - (now_s() - state$last_heartbeat))))
      frames <- poll_message(socket, wait_ms)
    }
    if (!is.null(frames)) {
      connected <- TRUE
      last_message <- now_s()
      goodbye <- tryCatch(handle_message(state, socket, frames), error = function(e) {
        log_line("dropped a message that could not be handled: %s", conditionMessage(e))
        FALSE
      })
      if (goodbye) {
        log_line("The frontend dropped this replica; reconnecting")
        return()
      }
    }
    if (!connected) next
    # A message read while the model ran (between chunks) is activity too: a batch longer
    # than `reconnect_after` is not the frontend's silence.
    if (now_s() - max(last_message, state$last_read) > reconnect_after) {
      log_line("No message from the frontend for %g s; reconnecting", reconnect_after)
      return()
    }
    heartbeat_if_due(state, socket)
  }
}

#' Serve a model as a Clipper replica
#'
#' Connects to the query frontend's RPC port, registers as `name`:`version` and
#' answers predict requests until interrupted (SIGINT), then says goodbye (RPC
#' version 4). A batch whose model call fails gets an error reply naming the R error
#' (its queries get the application's default output) and the replica keeps serving.
#' A goodbye from the frontend while the model runs (it found the model hung) ends
#' the serving.
#'
#' @param model A model from [load_model()], or a list with `func`, `input_type`
#'   and `input_class`.
#' @param name,version The model name and version to register as.
#' @param ip,port The query frontend's RPC address.
#' @param input_type The input type to serve (default: the model's).
#' @param rpc_version 4 (error replies, goodbye) or 3 (the original Clipper's).
#' @param heartbeat_interval Seconds between heartbeats.
#' @return `TRUE` (invisibly) when interrupted, `FALSE` when the frontend dropped the
#'   replica as hung.
#' @export
serve_model <- function(model, name, version, ip = "127.0.0.1", port = 7000L,
                        input_type = model$input_type, rpc_version = RPC_VERSION,
                        heartbeat_interval = 0.5) {
  if (!input_type %in% names(INPUT_TYPES)) {
    stop(sprintf("input_type must be one of %s, got %s",
                 paste(names(INPUT_TYPES), collapse = ", "), input_type))
  }
  if (!rpc_version %in% c(RPC_VERSION_LEGACY, RPC_VERSION)) {
    stop(sprintf("rpc_version must be 3 or 4, got %s", rpc_version))
  }
  state <- new_replica(model, name, version, input_type, rpc_version, heartbeat_interval)
  address <- sprintf("tcp://%s:%d", ip, as.integer(port))
  reconnect_after <- max(5 * heartbeat_interval, 3)
  log_line("Serving model %s version %s: %s inputs, frontend %s", name, version, input_type,
           address)
  context <- pbdZMQ::zmq.ctx.new()
  socket <- NULL
  on.exit({
    if (!is.null(socket)) pbdZMQ::zmq.close(socket)
    pbdZMQ::zmq.ctx.destroy(context)
  })
  tryCatch(repeat {
    socket <- pbdZMQ::zmq.socket(context, pbdZMQ::ZMQ.ST()$DEALER)
    pbdZMQ::zmq.setsockopt(socket, pbdZMQ::ZMQ.SO()$LINGER, 0L)
    pbdZMQ::zmq.connect(socket, address)
    serve_session(state, socket, reconnect_after)
    pbdZMQ::zmq.close(socket)
    socket <- NULL
  }, interrupt = function(e) {
    if (!is.null(socket) && state$rpc_version >= RPC_VERSION) send(socket, goodbye_message())
    log_line("Interrupted; stopped")
    invisible(TRUE)
  }, rclipper_dropped = function(e) {
    log_line("The frontend dropped this replica: the model did not answer a batch in time (hung)")
    invisible(FALSE)
  })
}

#' Serve the model bundle named by the environment (the replica's entry point)
#'
#' Reads `CLIPPER_MODEL_NAME`, `CLIPPER_MODEL_VERSION`, `CLIPPER_IP`, `CLIPPER_PORT`,
#' `CLIPPER_INPUT_TYPE`, `CLIPPER_MODEL_PATH` (the bundle directory holding
#' `func.rds`), `CLIPPER_HEARTBEAT_INTERVAL_S`, `CLIPPER_READY_FILE`,
#' `CLIPPER_RPC_VERSION` and `CLIPPER_REPLICA_SECRET` (sent when registering), as
#' `python -m clipper_core.runtime` does, and calls
#' [serve_model()]. Run by the replica process: `Rscript -e "Rclipper::serve_from_env()"`.
#'
#' @return Nothing; quits R with status 1 (bad environment), 2 (model not loadable) or
#'   75 (dropped by the frontend as hung: its backend starts a new replica).
#' @export
serve_from_env <- function() {
  env <- function(name, default = NA_character_) {
    value <- Sys.getenv(name, unset = "")
    if (nzchar(value)) value else default
  }
  for (required in c("CLIPPER_MODEL_NAME", "CLIPPER_MODEL_VERSION")) {
    if (is.na(env(required))) {
      message(sprintf("ERROR: %s environment variable must be set", required))
      quit(save = "no", status = 1L)
    }
  }
  path <- file.path(env("CLIPPER_MODEL_PATH", "/model"), MODEL_FILE)
  model <- tryCatch(load_model(path), error = function(e) {
    message(sprintf("Could not load the R model %s: %s", path, conditionMessage(e)))
    quit(save = "no", status = 2L)
  })
  ready_file <- env("CLIPPER_READY_FILE", "/model_is_ready.check")
  if (nzchar(ready_file)) {
    try(writeLines("READY", ready_file), silent = TRUE)
    on.exit(unlink(ready_file))
  }
  interrupted <- serve_model(
    model, env("CLIPPER_MODEL_NAME"), env("CLIPPER_MODEL_VERSION"),
    ip = env("CLIPPER_IP", "127.0.0.1"), port = as.integer(env("CLIPPER_PORT", "7000")),
    input_type = canonical_input_type(env("CLIPPER_INPUT_TYPE", model$input_type)),
    rpc_version = as.integer(env("CLIPPER_RPC_VERSION", as.character(RPC_VERSION))),
    heartbeat_interval = as.numeric(env("CLIPPER_HEARTBEAT_INTERVAL_S", "0.5")))
  if (!interrupted) {
    unlink(ready_file)
    log_line("Exiting with status %d so that a new replica is started", RETIRED_STATUS)
    quit(save = "no", status = RETIRED_STATUS)
  }
}

# Clipper's input type names and aliases (clipper_core/types.py).
canonical_input_type <- function(name) {
  key <- tolower(trimws(name))
  aliases <- c(bytes = "bytes", byte = "bytes", b = "bytes", ints = "ints", int = "ints",
               i = "ints", integers = "ints", integer = "ints", floats = "floats", float = "floats",
               f = "floats", doubles = "doubles", double = "doubles", d = "doubles",
               strings = "strings", string = "strings", str = "strings", strs = "strings",
               s = "strings")
  if (!key %in% names(aliases)) {
    stop(sprintf("unknown input type %s; expected one of bytes, ints, floats, doubles, strings",
                 name))
  }
  aliases[[key]]
}
