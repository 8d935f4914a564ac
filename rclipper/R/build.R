#' Build a Docker image of an R prediction function
#'
#' The original Rclipper's entry point. Infers the input type from
#' `class(sample_input)`, checks `prediction_function` on `list(sample_input)` (it must
#' return one output per input, each a string or convertible to one), saves it with the
#' globals and packages it needs ([save_model()]) and builds the Docker image
#' `<cluster_name>-<model_name>:<model_version>` on `clipper/r-closure` (R from Debian
#' packages and this package). With `model_registry` the image is
#' `<model_registry>/<cluster_name>-<model_name>:<model_version>` and is pushed there.
#' Deploy it from Python with `clipper_conn.deploy_model(name, version, input_type,
#' image)` or from R with [deploy_model()].
#'
#' @param model_name,model_version The model's name and version.
#' @param prediction_function Takes a list of inputs, returns a list (or vector) of
#'   outputs of the same length.
#' @inheritParams save_model
#' @param model_registry A registry to push the image to, or NULL.
#' @param cluster_name The cluster whose image name prefix to use.
#' @param python The Python interpreter with clipper-core and clipper-deployer-r.
#' @return The image name, invisibly.
#' @export
build_model <- function(model_name, model_version, prediction_function, sample_input,
                        model_registry = NULL, cluster_name = "default-cluster",
                        packages = character(),
                        python = Sys.getenv("CLIPPER_PYTHON", "python3")) {
  path <- tempfile(fileext = ".rds")
  on.exit(unlink(path))
  description <- save_model(prediction_function, sample_input, path, packages = packages)
  conn <- structure(list(cluster_name = cluster_name, backend = "docker", python = python),
                    class = "clipper_connection")
  args <- c("--name", model_name, "--version", as.character(model_version), "--rds", path)
  if (!is.null(model_registry)) args <- c(args, "--registry", model_registry)
  run_bridge(conn, "build", args)
  image <- sprintf("%s-%s:%s", cluster_name, model_name, model_version)
  if (!is.null(model_registry)) image <- paste0(model_registry, "/", image)
  message(sprintf(paste0(
    "Built image %s (%s inputs). Deploy it from Python with:\n",
    "  clipper_conn.deploy_model(\"%s\", \"%s\", \"%s\", \"%s\")\n",
    "or from R with:\n",
    "  Rclipper::deploy_model(Rclipper::clipper_connection(\"%s\", backend = \"docker\"), ",
    "\"%s\", \"%s\", \"%s\", \"%s\")"),
    image, description$input_type, model_name, model_version, description$input_type, image,
    cluster_name, model_name, model_version, description$input_type, image))
  invisible(image)
}
