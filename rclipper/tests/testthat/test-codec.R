test_that("the input type follows the sample input's class", {
  expect_identical(input_type_of(as.raw(1)), "bytes")
  expect_identical(input_type_of(1L), "ints")
  expect_identical(input_type_of(7), "doubles")
  expect_identical(input_type_of("a"), "strings")
  for (sample in list(data.frame(a = 1), matrix(1:4, 2), array(1:8, c(2, 2, 2)), list(1)))
    expect_identical(input_type_of(sample), "strings")
  expect_identical(input_class_of(data.frame(a = 1)), "data.frame")
  expect_identical(input_class_of(matrix(1:4, 2)), "matrix")
  expect_identical(input_class_of("a"), "character")
  expect_error(input_type_of(sum), "no Clipper input type")
})

test_that("every input type decodes from one concatenated frame", {
  expect_identical(decode_inputs("ints", c(8L, 4L), writeBin(c(1L, -2L, 3L), raw())),
                   list(c(1L, -2L), 3L))
  floats <- writeBin(c(0.5, 1.25), raw(), size = 4L, endian = "little")
  expect_identical(decode_inputs("floats", c(4L, 4L), floats), list(0.5, 1.25))
  expect_identical(decode_inputs("bytes", c(2L, 0L, 1L), as.raw(c(1, 255, 7))),
                   list(as.raw(c(1, 255)), raw(0), as.raw(7)))
  text <- c("h\u00e9", "", "x")
  decoded <- decode_inputs("strings", nchar(text, "bytes"), charToRaw(paste(text, collapse = "")))
  expect_identical(decoded, as.list(text))
  expect_identical(decode_inputs("doubles", integer(), raw(0)), list())
})

test_that("JSON-carried inputs become the sample input's class", {
  df <- data.frame(x = c(1, 2), y = c("a", "b"))
  json <- as.character(jsonlite::toJSON(df))
  decoded <- decode_inputs("strings", nchar(json, "bytes"), charToRaw(json), "data.frame")
  expect_equal(decoded[[1]], df)
  m <- as.character(jsonlite::toJSON(matrix(1:4, 2)))
  expect_identical(decode_inputs("strings", nchar(m), charToRaw(m), "matrix")[[1]],
                   matrix(1:4, 2))
})

test_that("bad input bytes are refused with what was expected", {
  expect_error(decode_inputs("doubles", 4L, raw(4)), "multiple of 8 bytes")
  expect_error(decode_inputs("ints", 8L, raw(4)), "announces 8 bytes of inputs but carries 4")
})

test_that("outputs become one string each, vectorised for numbers", {
  expect_identical(encode_outputs(c(1.5, 2, NA), 3L), c("1.5", "2", "null"))
  expect_identical(encode_outputs(list(1L, 2L), 2L), c("1", "2"))
  expect_identical(encode_outputs(list("a", "b"), 2L), c("a", "b"))
  expect_identical(encode_outputs(c(TRUE, FALSE), 2L), c("true", "false"))
  expect_identical(encode_outputs(factor(c("u", "v")), 2L), c("u", "v"))
  expect_identical(encode_outputs(list(c(1, 2.5), "s", list(a = 1)), 3L),
                   c("[1,2.5]", "s", "{\"a\":1}"))
  expect_identical(encode_outputs(list(), 0L), character())
  expect_error(encode_outputs(c(1, 2), 3L), "Expected model to return 3 outputs, found 2")
  expect_error(encode_outputs(sum, 1L), "expected a list or vector of 1 outputs")
})
