"""Analysis tools: per-layer activations and their mass budget, per-layer stability spectra, loss
landscapes, trajectories through depth, predictive uncertainty of stochastic networks."""
from .activations import MassBudget, layer_states, mass_budget
from .landscape import Landscape, filter_normalize, loss_landscape, random_direction
from .stability import Spectrum, field_jacobian, in_stability_region, layer_spectra, stability_function
from .trajectory import state_times, trajectory
from .uncertainty import expected_calibration_error, mc_probabilities, predictive_entropy
