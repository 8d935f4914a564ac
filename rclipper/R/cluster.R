# Working with a running cluster. Applications, links and queries go straight to the
# management (spec section 2) and query (section 1) REST APIs; starting replicas and
# building images is the container manager's work, done by the Python side
# (`python -m clipper_deployer_r`, from the clipper-deployer-r plugin), which this
# package calls as a command.

#' Connect to a running Clipper cluster
#'
#' Asks the cluster's container manager (through `python -m clipper_deployer_r
#' connect`) for the addresses of the management and query APIs and for the
#' management token, unless they are given.
#'
#' @param cluster_name The cluster's name.
#' @param backend `"local"` (the embedded default, no Docker) or `"docker"`.
#' @param cluster_dir The local cluster's directory (default: the backend's,
#'   `~/.clipper/<cluster_name>`).
#' @param management_addr,query_addr `host:port` of the management and query APIs.
#' @param token The management token (sent as `Authorization: Bearer <token>`);
#'   default `CLIPPER_MANAGEMENT_TOKEN`, else the one the cluster reports.
#' @param python The Python interpreter that has clipper-core and clipper-deployer-r
#'   (default `CLIPPER_PYTHON`, else `python3`).
#' @return A `clipper_connection`.
#' @export
clipper_connection <- function(cluster_name = "default-cluster", backend = "local",
                               cluster_dir = NULL, management_addr = NULL, query_addr = NULL,
                               token = Sys.getenv("CLIPPER_MANAGEMENT_TOKEN"),
                               python = Sys.getenv("CLIPPER_PYTHON", "python3")) {
  conn <- structure(list(cluster_name = cluster_name, backend = backend, python = python,
                         cluster_dir = cluster_dir, management_addr = management_addr, query_addr = query_addr,
                         token = token), class = "clipper_connection")
  if (is.null(management_addr) || is.null(query_addr)) {
    found <- jsonlite::fromJSON(paste(run_bridge(conn, "connect", capture = TRUE),
                                      collapse = "\n"))
    if (is.null(conn$management_addr)) conn$management_addr <- found$management
    if (is.null(conn$query_addr)) conn$query_addr <- found$query
    if (!nzchar(conn$token) && !is.null(found$token)) conn$token <- found$token
  }
  conn
}

#' @export
print.clipper_connection <- function(x, ...) {
  cat(sprintf("<clipper_connection %s (%s): management %s, query %s>\n", x$cluster_name,
              x$backend, x$management_addr, x$query_addr))
  invisible(x)
}

# Runs `python -m clipper_deployer_r <command> ...` for `conn`'s cluster; streams its
# output, or returns it with capture = TRUE.
run_bridge <- function(conn, command, args = character(), capture = FALSE) {
  argv <- c("-m", "clipper_deployer_r", command, "--backend", conn$backend,
            "--cluster-name", conn$cluster_name,
            if (!is.null(conn$cluster_dir)) c("--cluster-dir", conn$cluster_dir), args)
  errors <- if (capture) tempfile() else ""
  on.exit(if (capture) unlink(errors))
  # R's LD_LIBRARY_PATH (set by its start script) can make a Python load another libpython
  library_path <- Sys.getenv("LD_LIBRARY_PATH", unset = NA)
  Sys.unsetenv("LD_LIBRARY_PATH")
  on.exit(if (!is.na(library_path)) Sys.setenv(LD_LIBRARY_PATH = library_path), add = TRUE)
  out <- suppressWarnings(system2(conn$python, shQuote(argv),
                                  stdout = if (capture) TRUE else "", stderr = errors))
  status <- if (capture) attr(out, "status") else out
  if (!is.null(status) && status != 0L) {
    stop(sprintf(paste0("`%s -m clipper_deployer_r %s` failed with exit status %d%s. The ",
                        "Python side needs clipper-core and the clipper-deployer-r plugin ",
                        "(pip install clipper-deployer-r); set CLIPPER_PYTHON to the ",
                        "interpreter that has them"),
                 conn$python, command, status,
                 if (capture) paste0(":\n", paste(readLines(errors), collapse = "\n")) else ""),
         call. = FALSE)
  }
  invisible(out)
}

http_post <- function(conn, url, body, management) {
  handle <- curl::new_handle()
  headers <- c("Content-Type" = "application/json")
  if (management && nzchar(conn$token)) {
    headers <- c(headers, Authorization = paste("Bearer", conn$token))
  }
  curl::handle_setheaders(handle, .list = as.list(headers))
  curl::handle_setopt(handle, post = TRUE, timeout = 60L,
                      postfields = as.character(jsonlite::toJSON(
                        body, auto_unbox = TRUE, digits = NA, always_decimal = TRUE)))
  response <- curl::curl_fetch_memory(url, handle = handle)
  text <- rawToChar(response$content)
  Encoding(text) <- "UTF-8"
  list(status = response$status_code, text = text)
}

management_call <- function(conn, route, body) {
  response <- http_post(conn, sprintf("http://%s/admin/%s", conn$management_addr, route),
                        body, management = TRUE)
  if (response$status != 200L) {
    stop(sprintf("Received error status code: %d and message: %s", response$status,
                 response$text), call. = FALSE)
  }
  response$text
}

#' Register an application
#'
#' @param conn A [clipper_connection()].
#' @param name The application's name (its endpoint is `/<name>/predict`).
#' @param input_type `bytes`, `ints`, `floats`, `doubles` or `strings`.
#' @param default_output The answer when no prediction is in time.
#' @param slo_micros The latency objective in microseconds.
#' @return The management API's answer, invisibly.
#' @export
register_application <- function(conn, name, input_type, default_output = "None",
                                 slo_micros = 100000L) {
  invisible(management_call(conn, "add_app", list(
    name = name, input_type = input_type, default_output = default_output,
    latency_slo_micros = as.integer(slo_micros))))
}

#' Link a model to an application
#'
#' @param conn A [clipper_connection()].
#' @param app_name,model_name The application and the model that will answer it.
#' @return The management API's answer, invisibly.
#' @export
link_model_to_app <- function(conn, app_name, model_name) {
  invisible(management_call(conn, "add_model_links", list(
    app_name = app_name, model_names = I(model_name))))
}

# The query API's JSON for one input of `input_type`.
query_input <- function(input, input_type) {
  if (input_type == "bytes") {
    return(jsonlite::base64_enc(if (is.raw(input)) input else as.raw(input)))
  }
  if (input_type == "strings") {
    if (is.character(input) && length(input) == 1L) return(input)
    return(as.character(jsonlite::toJSON(input, digits = NA)))
  }
  if (input_type == "ints") return(I(as.integer(input)))
  I(as.numeric(input))
}

#' Query an application
#'
#' Sends one input to `/<app_name>/predict` and returns the parsed answer: `output`
#' (JSON outputs parsed), `default` (TRUE when the default output answered) and
#' `default_explanation`.
#'
#' @param object A [clipper_connection()].
#' @param app_name The application.
#' @param input One input: a vector (numbers, raw), a string, or a data.frame, matrix,
#'   array or list (sent as a JSON string, for models built from such a sample input).
#' @param input_type The application's input type (default: from the input's class).
#' @param ... Unused.
#' @return The answer as a list.
#' @importFrom stats predict
#' @export
predict.clipper_connection <- function(object, app_name, input,
                                       input_type = input_type_of(input), ...) {
  response <- http_post(object, sprintf("http://%s/%s/predict", object$query_addr, app_name),
                        list(input = query_input(input, canonical_input_type(input_type))),
                        management = FALSE)
  answer <- jsonlite::fromJSON(response$text, simplifyVector = TRUE)
  if (response$status != 200L) {
    stop(sprintf("Query to %s failed with status %d: %s", app_name, response$status,
                 response$text), call. = FALSE)
  }
  answer
}

#' Deploy a model image or bundle that is already built
#'
#' Records the model with the management API and starts its replicas with the
#' cluster's container manager, as `ClipperConnection.deploy_model` does.
#'
#' @param conn A [clipper_connection()].
#' @param name,version The model's name and version.
#' @param input_type The model's input type.
#' @param image A Docker image (e.g. from [build_model()]) or, on the local backend, a
#'   model directory.
#' @param num_replicas How many replicas to start.
#' @param batch_size A fixed batch size, or -1 for adaptive batching.
#' @return Nothing.
#' @export
deploy_model <- function(conn, name, version, input_type, image, num_replicas = 1L,
                         batch_size = -1L) {
  run_bridge(conn, "deploy-image", c("--name", name, "--version", as.character(version),
                                     "--input-type", input_type, "--image", image,
                                     "--num-replicas", as.character(num_replicas),
                                     "--batch-size", as.character(batch_size)))
  invisible()
}

#' Deploy an R function onto a running cluster
#'
#' Saves the function with [save_model()] (checked on `list(sample_input)` and in a
#' fresh R process), then deploys it: on the local backend its replicas are Rscript
#' processes, on Docker the model runs in an image built on `clipper/r-closure`.
#'
#' @inheritParams deploy_model
#' @inheritParams save_model
#' @param func The prediction function.
#' @param input_type The input type to serve (default: from the sample input; a numeric
#'   sample input may also serve `floats`).
#' @return The saved model's description, invisibly.
#' @export
deploy_r_function <- function(conn, name, version, func, sample_input,
                              input_type = input_type_of(sample_input), num_replicas = 1L,
                              batch_size = -1L, packages = character()) {
  path <- tempfile(fileext = ".rds")
  on.exit(unlink(path))
  description <- save_model(func, sample_input, path, packages = packages)
  run_bridge(conn, "deploy", c("--name", name, "--version", as.character(version),
                               "--rds", path, "--input-type", input_type,
                               "--num-replicas", as.character(num_replicas),
                               "--batch-size", as.character(batch_size)))
  invisible(description)
}
