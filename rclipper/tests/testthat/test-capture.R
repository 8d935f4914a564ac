test_that("globals from the global environment are captured, packages recorded", {
  env <- globalenv()
  assign("rclipper_test_fit", stats::lm(y ~ x, data.frame(x = 1:10, y = 2 * (1:10) + 1)),
         envir = env)
  assign("rclipper_test_helper", function(v) v * rclipper_test_scale, envir = env)
  assign("rclipper_test_scale", 10, envir = env)
  on.exit(rm(list = c("rclipper_test_fit", "rclipper_test_helper", "rclipper_test_scale"),
             envir = env))
  f <- function(inputs) {
    new <- data.frame(x = vapply(inputs, function(i) i[1], 0))
    rclipper_test_helper(predict(rclipper_test_fit, new)) + utils::head(1, 1)
  }
  environment(f) <- env
  captured <- capture_function(f)
  expect_setequal(names(captured$globals),
                  c("rclipper_test_fit", "rclipper_test_helper", "rclipper_test_scale"))
  expect_true(all(c("stats", "utils") %in% captured$packages))
  expect_false("base" %in% captured$packages)
})

test_that("a saved model works in a fresh R process, globals and packages included", {
  env <- globalenv()
  assign("rclipper_test_fit", stats::lm(y ~ x, data.frame(x = 1:10, y = 3 * (1:10) - 1)),
         envir = env)
  on.exit(rm("rclipper_test_fit", envir = env))
  f <- function(inputs) {
    predict(rclipper_test_fit, data.frame(x = vapply(inputs, function(i) i[1], 0)))
  }
  environment(f) <- env
  path <- tempfile(fileext = ".rds")
  description <- save_model(f, 4, path)  # verify = TRUE: loads it in a fresh Rscript
  expect_identical(description$input_type, "doubles")
  expect_true("stats" %in% description$packages)
  rm("rclipper_test_fit", envir = env)
  model <- load_model(path)
  expect_equal(model$func(list(2, 5)), c(`1` = 5, `2` = 14))
})

test_that("functions that fail on the sample input are refused at save time", {
  path <- tempfile(fileext = ".rds")
  expect_error(save_model(function(inputs) stop("nope"), 1, path),
               "failed on list\\(sample_input\\): nope")
  expect_error(save_model(function(inputs) c(1, 2), 1, path), "one output per input")
  expect_error(save_model(42, 1, path), "must be a function")
  expect_false(file.exists(path))
})

test_that("a file that is not a saved model is named as such", {
  path <- tempfile(fileext = ".rds")
  saveRDS(list(a = 1), path)
  expect_error(load_model(path), "not a model saved by Rclipper::save_model")
})
