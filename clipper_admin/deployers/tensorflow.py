"""The tensorflow deployer, provided by the plugin clipper-deployer-tensorflow."""

from clipper_core.admin.facade import plugin_functions

plugin_functions(globals(), "clipper_deployer_tensorflow", "clipper-deployer-tensorflow",
                 ["deploy_tensorflow_model", "create_endpoint"])
