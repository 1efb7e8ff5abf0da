"""The module panel's Qt side (needs Slicer's PythonQt; imported only by the module's widget)."""
