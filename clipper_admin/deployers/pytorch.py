"""The pytorch deployer, provided by the plugin clipper-deployer-pytorch."""

from clipper_core.admin.facade import plugin_functions

plugin_functions(globals(), "clipper_deployer_pytorch", "clipper-deployer-pytorch",
                 ["deploy_pytorch_model", "create_endpoint"])
