# Batches in and out of the wire form. A model receives a list with one element per
# input and returns one output per input.

ELEMENT_SIZE <- c(bytes = 1L, ints = 4L, floats = 4L, doubles = 8L, strings = 1L)

# The input type a sample input stands for (the original Rclipper's rules).
input_type_of <- function(sample_input) {
  if (is.data.frame(sample_input) || is.matrix(sample_input) || is.array(sample_input) ||
      is.list(sample_input)) {
    return("strings")
  }
  if (is.raw(sample_input)) return("bytes")
  if (is.integer(sample_input)) return("ints")
  if (is.numeric(sample_input)) return("doubles")
  if (is.character(sample_input)) return("strings")
  stop(sprintf(paste0(
    "sample_input of class %s has no Clipper input type. Use a raw, integer, numeric or ",
    "character vector, or a data.frame, matrix, array or list (sent as JSON strings)"),
    paste(class(sample_input), collapse = "/")))
}

# How string inputs are turned into R objects: "character" (as they are) or the class
# of a JSON-carried sample input.
input_class_of <- function(sample_input) {
  if (is.data.frame(sample_input)) return("data.frame")
  if (is.matrix(sample_input)) return("matrix")
  if (is.array(sample_input)) return("array")
  if (is.list(sample_input)) return("list")
  "character"
}

read_elements <- function(bytes, input_type) {
  switch(input_type,
    bytes = bytes,
    ints = readBin(bytes, "integer", n = length(bytes) %/% 4L, size = 4L, endian = "little"),
    floats = readBin(bytes, "double", n = length(bytes) %/% 4L, size = 4L, endian = "little"),
    doubles = readBin(bytes, "double", n = length(bytes) %/% 8L, size = 8L, endian = "little"),
    stop(sprintf("unknown input type %s", input_type)))
}

from_json <- function(text, input_class) {
  value <- jsonlite::fromJSON(text, simplifyVector = input_class != "list")
  if (input_class == "data.frame" && !is.data.frame(value)) value <- as.data.frame(value)
  value
}

# The list of inputs the model is called with, from the sizes and bytes of a request.
decode_inputs <- function(input_type, sizes, data, input_class = "character") {
  n <- length(sizes)
  item <- ELEMENT_SIZE[[input_type]]
  if (any(sizes %% item != 0L)) {
    stop(sprintf("every %s input must be a multiple of %d bytes, got input sizes %s",
                 input_type, item, paste(sizes, collapse = ", ")))
  }
  if (is.list(data)) {  # RPC v3: one frame per input
    if (input_type == "strings") {
      inputs <- vapply(data, rawToChar, "")
      Encoding(inputs) <- "UTF-8"
      return(decode_strings(inputs, input_class))
    }
    return(lapply(data, read_elements, input_type = input_type))
  }
  if (length(data) != sum(sizes)) {
    stop(sprintf("the request announces %d bytes of inputs but carries %d",
                 sum(sizes), length(data)))
  }
  if (n == 0L) return(list())
  ends <- cumsum(sizes)
  starts <- ends - sizes + 1L
  if (input_type == "strings") {
    inputs <- vapply(seq_len(n), function(i) {
      if (sizes[i] == 0L) "" else rawToChar(data[starts[i]:ends[i]])
    }, "")
    Encoding(inputs) <- "UTF-8"
    return(decode_strings(inputs, input_class))
  }
  if (input_type == "bytes") {
    return(lapply(seq_len(n), function(i) data[seq_len(sizes[i]) + (starts[i] - 1L)]))
  }
  values <- read_elements(data, input_type)
  counts <- sizes %/% item
  unname(split(values, rep.int(seq_len(n), counts)))
}

decode_strings <- function(inputs, input_class) {
  if (input_class == "character") return(as.list(inputs))
  lapply(inputs, from_json, input_class = input_class)
}

number_text <- function(x) {
  out <- if (is.logical(x)) tolower(as.character(x)) else as.character(x)
  out[is.na(x)] <- "null"
  out
}

# One string per output. Atomic results are converted in one vectorised call; a list
# of scalars is flattened first; other list elements (vectors, data frames) become
# JSON, numeric vectors without jsonlite.
encode_outputs <- function(outputs, expected) {
  if (is.factor(outputs)) outputs <- as.character(outputs)
  if (!is.atomic(outputs) && !is.list(outputs) || is.null(outputs) && expected > 0L) {
    stop(sprintf(paste0("The model returned %s; expected a list or vector of %d outputs, ",
                        "one per input"), paste(class(outputs), collapse = "/"), expected))
  }
  if (length(outputs) != expected) {
    stop(sprintf("Expected model to return %d outputs, found %d outputs",
                 expected, length(outputs)))
  }
  if (is.character(outputs)) return(unname(outputs))
  if (is.numeric(outputs) || is.logical(outputs)) return(unname(number_text(outputs)))
  if (is.raw(outputs) || is.complex(outputs)) return(as.character(outputs))
  scalar <- vapply(outputs, function(o) is.atomic(o) && length(o) == 1L && !is.factor(o), TRUE)
  if (all(scalar)) {
    flat <- unlist(outputs, use.names = FALSE)
    if (is.character(flat)) return(flat)
    return(number_text(flat))
  }
  vapply(outputs, encode_output, "", USE.NAMES = FALSE)
}

encode_output <- function(output) {
  if (is.character(output) && length(output) == 1L) return(output)
  if ((is.numeric(output) || is.logical(output)) && is.null(attributes(output))) {
    return(paste0("[", paste0(number_text(output), collapse = ","), "]"))
  }
  as.character(jsonlite::toJSON(output, auto_unbox = TRUE, digits = NA, null = "null",
                                na = "null"))
}
