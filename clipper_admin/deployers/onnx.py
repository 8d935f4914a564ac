"""The ONNX deployer, provided by the plugin clipper-deployer-onnx."""

from clipper_core.admin.facade import plugin_functions

plugin_functions(globals(), "clipper_deployer_onnx", "clipper-deployer-onnx",
                 ["deploy_onnx_model", "deploy_pytorch_model", "create_pytorch_endpoint",
                  "create_endpoint"])
