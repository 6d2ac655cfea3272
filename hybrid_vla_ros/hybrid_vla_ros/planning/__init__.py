"""Strategic (level 3) and tactical (level 2) planners: pure PyTorch, no rclpy.

- ``strategic_planner.StrategicPlanner.from_checkpoint(dir).plan(instruction, image,
  camera_info)`` -> ``skills.Plan`` (validated, grounded sub-goals)
- ``tactical_planner.TacticalPlanner.from_checkpoint(dir).waypoints(subgoal, observation)``
  -> list of ``Waypoint(pos, quat, gripper, time_from_start)``
- ``skills.validate_plan`` / ``llm_backend.parse_llm_plan``: every backend's output (trained
  heads, ``llm_backend.LLMBackend``, ``vlm_backend.HFVLMBackend``) is checked against the skill
  allow-list and the scene's objects (``PlanningError`` otherwise)
- training lives in ``training/train_planner.py`` (``train_strategic`` / ``train_tactical``, on
  the sim data of ``training/planner_data.py``), the held-out evaluation in
  ``evaluation/planner_eval.py`` (``evaluate_planner``); their CLI is ``cli``.

Submodules are imported on demand (the backbones pull in transformers).
"""
