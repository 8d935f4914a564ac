# Clipper's model-container RPC, frame by frame (docs/model-runtime.md and
# clipper_core/rpc/protocol.py hold the reference). Frames are raw vectors as the
# container's DEALER socket sees them; every integer is little-endian. R has no
# 64-bit integers, so u64 values are written and read as pairs of 32-bit words
# (low word first) and must stay below 2^31.

RPC_VERSION_LEGACY <- 3L
RPC_VERSION <- 4L

MSG_NEW_CONTAINER <- 0L
MSG_CONTAINER_CONTENT <- 1L
MSG_HEARTBEAT <- 2L
MSG_ERROR <- 3L
MSG_GOODBYE <- 4L

HEARTBEAT_REQUEST_METADATA <- 1L
REQUEST_PREDICT <- 0L

#: Input type codes of the wire (spec section 4.1).
INPUT_TYPES <- c(bytes = 0L, ints = 1L, floats = 2L, doubles = 3L, strings = 4L)

u32 <- function(value) {
  writeBin(as.integer(value), raw(), size = 4L, endian = "little")
}

read_u32 <- function(frame) {
  if (length(frame) < 4L) {
    stop(sprintf("expected a 4-byte integer frame, got %d bytes", length(frame)))
  }
  readBin(frame, "integer", n = 1L, size = 4L, endian = "little")
}

u64_array <- function(values) {
  values <- as.numeric(values)
  if (any(values >= 2^31 | values < 0)) {
    stop("a u64 field of the RPC is outside 0 .. 2^31 - 1, which R cannot represent")
  }
  words <- rbind(as.integer(values), 0L)
  writeBin(as.vector(words), raw(), size = 4L, endian = "little")
}

read_u64_array <- function(frame) {
  if (length(frame) %% 8L != 0L) {
    stop(sprintf("a u64 array frame must be a multiple of 8 bytes, got %d", length(frame)))
  }
  words <- readBin(frame, "integer", n = length(frame) %/% 4L, size = 4L, endian = "little")
  low <- words[c(TRUE, FALSE)]
  high <- words[c(FALSE, TRUE)]
  if (any(high != 0L) || any(low < 0L)) {
    stop("a u64 field of the RPC is 2^31 or more, which R cannot represent")
  }
  low
}

heartbeat_message <- function() list(raw(0), u32(MSG_HEARTBEAT))

goodbye_message <- function() list(raw(0), u32(MSG_GOODBYE))

# `secret`: the cluster's replica secret, sent as a last frame when not empty.
new_container_message <- function(name, version, input_type, rpc_version, secret = "") {
  frames <- list(raw(0), u32(MSG_NEW_CONTAINER), charToRaw(enc2utf8(name)),
                 charToRaw(enc2utf8(as.character(version))),
                 charToRaw(as.character(INPUT_TYPES[[input_type]])), u32(rpc_version))
  if (nzchar(secret)) c(frames, list(charToRaw(enc2utf8(secret)))) else frames
}

# The reply to a predict request: one frame per output (v3) or all outputs in one
# frame (v4). `outputs` is a character vector.
response_message <- function(msg_id, outputs, rpc_version) {
  outputs <- enc2utf8(outputs)
  sizes <- nchar(outputs, type = "bytes")
  header <- u64_array(c(length(outputs), sizes))
  head <- list(raw(0), u32(MSG_CONTAINER_CONTENT), msg_id, u64_array(length(header)), header)
  if (rpc_version >= RPC_VERSION) {
    blob <- if (length(outputs)) charToRaw(paste0(outputs, collapse = "")) else raw(0)
    return(c(head, list(blob)))
  }
  c(head, lapply(outputs, charToRaw))
}

error_message <- function(msg_id, message) {
  list(raw(0), u32(MSG_ERROR), msg_id, charToRaw(enc2utf8(message)))
}

# Splits a frontend message into its RPC version, message type and the other frames.
parse_frontend_message <- function(frames) {
  if (length(frames) < 3L) {
    stop(sprintf("expected at least 3 frames from the frontend, got %d", length(frames)))
  }
  list(rpc_version = read_u32(frames[[2L]]), type = read_u32(frames[[3L]]),
       rest = frames[-(1:3)])
}

# Decodes the frames after the message type of a predict request: the message id
# (kept as its 4 raw bytes), input type code, input sizes and the input bytes (one
# raw vector in v4, a list of raw vectors in v3).
parse_predict_request <- function(rest, rpc_version) {
  if (length(rest) < 4L) {
    stop(sprintf("a predict request needs at least 4 frames after its type, got %d",
                 length(rest)))
  }
  request_type <- read_u32(rest[[2L]])
  if (request_type != REQUEST_PREDICT) {
    stop(sprintf("unsupported request type %d", request_type))
  }
  header <- read_u64_array(rest[[4L]])
  n <- header[2L]
  sizes <- header[-(1:2)]
  if (length(sizes) != n) {
    stop(sprintf("the header announces %d inputs but lists %d sizes", n, length(sizes)))
  }
  data <- if (rpc_version >= RPC_VERSION) rest[[5L]] else rest[seq_len(n) + 4L]
  list(msg_id = rest[[1L]], input_type = header[1L], sizes = sizes, data = data)
}
