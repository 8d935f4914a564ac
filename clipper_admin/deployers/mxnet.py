"""The mxnet deployer, provided by the plugin clipper-deployer-mxnet."""

from clipper_core.admin.facade import plugin_functions

plugin_functions(globals(), "clipper_deployer_mxnet", "clipper-deployer-mxnet",
                 ["deploy_mxnet_model", "create_endpoint"])
