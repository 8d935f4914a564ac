bytes <- function(...) as.raw(c(...))

test_that("container messages are RPC v3 byte for byte", {
  expect_identical(heartbeat_message(), list(raw(0), bytes(2, 0, 0, 0)))
  expect_identical(goodbye_message(), list(raw(0), bytes(4, 0, 0, 0)))
  expect_identical(new_container_message("m", 1, "doubles", 3L),
                   list(raw(0), bytes(0, 0, 0, 0), charToRaw("m"), charToRaw("1"),
                        charToRaw("3"), bytes(3, 0, 0, 0)))
  msg_id <- bytes(7, 0, 0, 0)
  v3 <- response_message(msg_id, c("ab", "\u00e9"), 3L)
  expect_identical(v3, list(raw(0), bytes(1, 0, 0, 0), msg_id,
                            bytes(24, 0, 0, 0, 0, 0, 0, 0),
                            bytes(2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
                                  2, 0, 0, 0, 0, 0, 0, 0),
                            charToRaw("ab"), bytes(0xc3, 0xa9)))
  v4 <- response_message(msg_id, c("ab", "\u00e9"), 4L)
  expect_identical(v4[1:5], v3[1:5])
  expect_identical(v4[[6]], bytes(0x61, 0x62, 0xc3, 0xa9))
  expect_identical(error_message(msg_id, "boom"),
                   list(raw(0), bytes(3, 0, 0, 0), msg_id, charToRaw("boom")))
})

test_that("u64 fields are coded byte-wise and refuse what R cannot hold", {
  expect_identical(u64_array(c(1, 2^31 - 1)),
                   bytes(1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0))
  expect_identical(read_u64_array(u64_array(c(0, 5, 2^31 - 1))), c(0L, 5L, 2147483647L))
  expect_error(u64_array(2^31), "2\\^31")
  expect_error(read_u64_array(bytes(0, 0, 0, 0, 1, 0, 0, 0)), "2\\^31 or more")
  expect_error(read_u64_array(bytes(0, 0, 0)), "multiple of 8")
})

request <- function(version, type_code, inputs) {
  header <- u64_array(c(type_code, length(inputs), vapply(inputs, length, 0L)))
  head <- list(raw(0), u32(version), u32(1L), bytes(9, 0, 0, 0), u32(0L),
               u64_array(length(header)), header)
  if (version >= 4L) c(head, list(do.call(c, inputs))) else c(head, inputs)
}

test_that("predict requests of both versions decode to the same inputs", {
  inputs <- list(writeBin(c(1.5, 2), raw(), endian = "little"),
                 writeBin(3.25, raw(), endian = "little"))
  for (version in 3:4) {
    message <- parse_frontend_message(request(version, 3L, inputs))
    expect_identical(message$rpc_version, version)
    expect_identical(message$type, MSG_CONTAINER_CONTENT)
    parsed <- parse_predict_request(message$rest, version)
    expect_identical(parsed$msg_id, bytes(9, 0, 0, 0))
    expect_identical(parsed$input_type, 3L)
    expect_identical(parsed$sizes, c(16L, 8L))
    expect_identical(decode_inputs("doubles", parsed$sizes, parsed$data),
                     list(c(1.5, 2), 3.25))
  }
})

test_that("malformed frontend messages are refused with what was wrong", {
  expect_error(parse_frontend_message(list(raw(0))), "at least 3 frames")
  expect_error(parse_predict_request(list(bytes(1, 0, 0, 0), u32(1L), raw(8), raw(8)), 4L),
               "unsupported request type 1")
  bad <- list(bytes(1, 0, 0, 0), u32(0L), u64_array(24), u64_array(c(3, 2, 8)), raw(8))
  expect_error(parse_predict_request(bad, 4L), "announces 2 inputs but lists 1")
})
