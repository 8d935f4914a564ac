"""The R deployer, provided by the plugin clipper-deployer-r."""

from clipper_core.admin.facade import plugin_functions

plugin_functions(globals(), "clipper_deployer_r", "clipper-deployer-r",
                 ["deploy_r_model", "create_endpoint"])
