# hybrid_vla_ros: two commands for a machine without ROS.
#   make demo   set up (if needed) and run the demo (make demo ROBOT=arm6: another arm,
#               a config name or a robot YAML path; CHECKPOINTS=DIR EXPERT=NAME: its motor
#               checkpoints, e.g. from hybrid_vla_ros/bench/bench_new_arm.py)
#   make test   set up (if needed) and run the whole test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := source scripts/env.sh &&
TESTS ?= hybrid_vla_ros/test
PYTEST_ARGS ?=
ROBOT ?=
CHECKPOINTS ?=
EXPERT ?=

.PHONY: help setup test demo lint bench clean

help:
	@echo "make demo | make test | make setup | make lint | make bench | make clean"

setup:
	@bash scripts/setup.sh

test: setup
	@$(ENV) python -m pytest $(TESTS) $(PYTEST_ARGS)

demo: setup
	@$(ENV) python -m hybrid_vla_ros.cli demo $(if $(ROBOT),--robot $(ROBOT)) \
		$(if $(CHECKPOINTS),--checkpoints $(CHECKPOINTS)) $(if $(EXPERT),--expert $(EXPERT))

lint: setup
	@$(ENV) ruff check hybrid_vla_ros

# The quick benchmarks; the closed-loop ones (expert, coarse_to_fine, routing, hierarchy,
# planner) take minutes each: see the README's results table for their commands.
bench: setup
	@$(ENV) python hybrid_vla_ros/bench/bench_sim.py && \
	  python hybrid_vla_ros/bench/bench_executor.py && \
	  python hybrid_vla_ros/bench/bench_latency.py

clean:
	rm -rf build install log .venv
