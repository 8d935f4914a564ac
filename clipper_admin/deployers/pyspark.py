"""The pyspark deployer, provided by the plugin clipper-deployer-pyspark."""

from clipper_core.admin.facade import plugin_functions

plugin_functions(globals(), "clipper_deployer_pyspark", "clipper-deployer-pyspark",
                 ["deploy_pyspark_model", "create_endpoint"])
