"""ROS-free MuJoCo plant for hybrid_vla_ros: simulator, kinematics, task suite, scripted expert.

Nothing in this package imports rclpy; it runs and is tested with pip packages only.
"""
