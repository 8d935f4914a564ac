# A saved model: the prediction function, the global objects it uses (saveRDS keeps
# .GlobalEnv by reference, so they would be missing in a fresh R process) and the
# packages it needs, found with codetools::findGlobals.

MODEL_FORMAT <- 1L

#: The file of a model bundle that holds the saved model.
MODEL_FILE <- "func.rds"

find_binding <- function(name, env) {
  while (!identical(env, emptyenv())) {
    if (exists(name, envir = env, inherits = FALSE)) return(env)
    env <- parent.env(env)
  }
  NULL
}

package_of <- function(env) {
  if (isNamespace(env)) return(getNamespaceName(env)[[1L]])
  name <- environmentName(env)
  if (startsWith(name, "package:")) return(sub("^package:", "", name))
  if (identical(env, baseenv())) return("base")
  NULL
}

# Packages named in `pkg::name` or `pkg:::name` anywhere in `expr`.
qualified_packages <- function(expr) {
  found <- character()
  walk <- function(e) {
    if (is.call(e)) {
      head <- e[[1L]]
      if (is.name(head) && as.character(head) %in% c("::", ":::")) {
        found <<- c(found, as.character(e[[2L]]))
      }
      for (part in as.list(e)) if (!missing(part)) walk(part)
    } else if (is.function(e)) {
      walk(body(e))
    }
  }
  walk(expr)
  found
}

has_external_pointer <- function(x, depth = 0L) {
  if (depth > 20L) return(FALSE)
  if (typeof(x) == "externalptr") return(TRUE)
  parts <- if (is.list(x)) x else list()
  if (is.environment(x) && !isNamespace(x) && !identical(x, globalenv())) {
    parts <- mget(ls(x, all.names = TRUE), envir = x)
  }
  for (a in attributes(x)) parts <- c(parts, list(a))
  for (p in parts) if (has_external_pointer(p, depth + 1L)) return(TRUE)
  FALSE
}

#' Capture a prediction function with the globals and packages it needs
#'
#' Finds every global name the function (and every global function it calls) uses
#' with [codetools::findGlobals()]: objects bound in the global environment are copied
#' into the capture, names bound in packages record the package (as do `pkg::name`
#' calls).
#'
#' @param func The prediction function: takes a list of inputs, returns one output per
#'   input.
#' @param packages Extra packages to load before the function is called.
#' @return A list with `func`, `globals` (named list) and `packages` (character).
#' @export
capture_function <- function(func, packages = character()) {
  if (!is.function(func)) {
    stop(sprintf("prediction_function must be a function, got %s",
                 paste(class(func), collapse = "/")))
  }
  globals <- list()
  found <- as.character(packages)
  seen <- character()
  visit <- function(f) {
    if (is.primitive(f)) return()
    found <<- c(found, qualified_packages(body(f)))
    for (name in codetools::findGlobals(f, merge = TRUE)) {
      if (name %in% seen) next
      seen <<- c(seen, name)
      where <- find_binding(name, environment(f))
      if (is.null(where)) next
      package <- package_of(where)
      if (!is.null(package)) {
        found <<- c(found, package)
      } else if (identical(where, globalenv())) {
        value <- get(name, envir = where)
        if (has_external_pointer(value)) {
          stop(sprintf(paste0(
            "The global object '%s' holds an external pointer (a handle into C code, e.g. ",
            "an xgboost or Rcpp object), which does not survive serialization. Save the ",
            "model in the package's own format and load it inside the function"), name))
        }
        globals[[name]] <<- value
        if (is.function(value)) visit(value)
      }
    }
  }
  visit(func)
  if (!identical(environment(func), globalenv()) && has_external_pointer(environment(func))) {
    stop(paste0("The function's environment holds an external pointer (a handle into C ",
                "code), which does not survive serialization"))
  }
  packages <- setdiff(unique(found), "base")
  list(func = func, globals = globals, packages = packages)
}

# Calls func on list(sample_input) and checks it returns one output.
check_function <- function(func, sample_input) {
  outputs <- tryCatch(func(list(sample_input)), error = function(e) {
    stop(sprintf("The prediction function failed on list(sample_input): %s",
                 conditionMessage(e)), call. = FALSE)
  })
  tryCatch(encode_outputs(outputs, 1L), error = function(e) {
    stop(sprintf(paste0("The prediction function must return a list (or vector) with one ",
                        "output per input: %s"), conditionMessage(e)), call. = FALSE)
  })
}

#' Save a prediction function as a Clipper model file
#'
#' Checks the function on `list(sample_input)`, captures it with
#' [capture_function()], writes it with [saveRDS()] and (with `verify = TRUE`) loads it
#' in a fresh R process and checks that it answers `sample_input` the same way. The
#' file can be deployed from Python with `clipper_admin.deployers.r.deploy_r_model`.
#'
#' @inheritParams capture_function
#' @param sample_input One input of the type the function takes; its class gives the
#'   input type (raw: bytes, integer: ints, numeric: doubles, character: strings;
#'   data.frame, matrix, array and list: strings carrying JSON).
#' @param path Where to write the model (an `.rds` file).
#' @param verify Check the saved model in a fresh R process.
#' @return The model's description (input type, packages), invisibly.
#' @export
save_model <- function(func, sample_input, path, packages = character(), verify = TRUE) {
  captured <- capture_function(func, packages)
  expected <- check_function(func, sample_input)
  model <- c(list(format = MODEL_FORMAT,
                  rclipper = as.character(utils::packageVersion("Rclipper")),
                  r_version = paste(R.version$major, R.version$minor, sep = "."),
                  input_type = input_type_of(sample_input),
                  input_class = input_class_of(sample_input)),
             captured)
  saveRDS(model, path)
  if (verify) verify_in_fresh_process(path, sample_input, expected)
  invisible(describe_model(model))
}

describe_model <- function(model) {
  list(input_type = model$input_type, input_class = model$input_class,
       packages = model$packages, globals = names(model$globals),
       r_version = model$r_version, rclipper = model$rclipper)
}

rscript <- function() file.path(R.home("bin"), "Rscript")

verify_in_fresh_process <- function(path, sample_input, expected) {
  sample_file <- tempfile(fileext = ".rds")
  on.exit(unlink(sample_file))
  saveRDS(sample_input, sample_file)
  code <- sprintf(paste0("m <- Rclipper::load_model(%s); ",
                         "cat(Rclipper:::encode_outputs(m$func(list(readRDS(%s))), 1L))"),
                  deparse(path), deparse(sample_file))
  out <- suppressWarnings(system2(rscript(), c("--vanilla", "-e", shQuote(code)),
                                  stdout = TRUE, stderr = TRUE,
                                  env = paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0L || !identical(utils::tail(out, 1L), expected)) {
    stop(sprintf(paste0(
      "The saved model does not work in a fresh R process (it answered %s instead of %s). ",
      "Its output:\n%s\nMake everything the function uses reachable from it (globals, ",
      "packages via library() or pkg::name) or pass packages = c(...)"),
      deparse(utils::tail(out, 1L)), deparse(expected), paste(out, collapse = "\n")),
      call. = FALSE)
  }
}

#' Load a model saved by save_model
#'
#' Attaches the packages the model needs and puts its captured globals into the
#' global environment, where the function finds them.
#'
#' @param path The `.rds` file written by [save_model()].
#' @return The model: a list with `func`, `input_type`, `input_class`, `packages`.
#' @export
load_model <- function(path) {
  model <- read_model(path)
  for (package in model$packages) {
    if (!requireNamespace(package, quietly = TRUE)) {
      stop(sprintf(paste0("The model needs the R package '%s', which is not installed in ",
                          "this R library (%s). Install it (Debian: apt-get install r-cran-%s)"),
                   package, paste(.libPaths(), collapse = ":"), tolower(package)),
           call. = FALSE)
    }
    attach_package(package)
  }
  list2env(model$globals, envir = globalenv())
  model
}

read_model <- function(path) {
  model <- readRDS(path)
  if (!is.list(model) || is.null(model$format) || !is.function(model$func)) {
    stop(sprintf(paste0("%s is not a model saved by Rclipper::save_model (it holds a %s). ",
                        "Save the function with Rclipper::save_model(func, sample_input, path)"),
                 path, paste(class(model), collapse = "/")), call. = FALSE)
  }
  model
}

attach_package <- function(package) {
  if (!paste0("package:", package) %in% search()) {
    suppressPackageStartupMessages(attachNamespace(package))
  }
}
