whatis("Apptainer container runtime (acceptance stand-in)")
prepend_path("PATH", "/opt/apptainer/bin")
