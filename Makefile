# hybrid_vla_ros: two commands for a machine without ROS.
#   make demo   set up (if needed) and run the demo
#   make test   set up (if needed) and run the whole test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := source scripts/env.sh &&
TESTS ?= hybrid_vla_ros/test
PYTEST_ARGS ?=

.PHONY: help setup test demo lint bench clean

help:
	@echo "make demo | make test | make setup | make lint | make bench | make clean"

setup:
	@bash scripts/setup.sh

test: setup
	@$(ENV) python -m pytest $(TESTS) $(PYTEST_ARGS)

demo: setup
	@$(ENV) python -m hybrid_vla_ros.cli demo

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
