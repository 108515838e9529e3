// Command mcp-peer is the MCP controller of the bench.peers benchmark written the way a
// controller-runtime operator usually is: For the MCP (unstructured, no predicate), Owns its
// ConfigMap, Deployment, Service and NetworkPolicy (agentkube makes one by default), server-side
// applies them on every reconcile, updates the
// status (observedGeneration and an Accepted condition) when it changed, and records one Event when
// an MCP's generation is first handled.
//
// The children's shapes are not built here: they are read from a JSON file (MCP name -> its
// children without owner references) that agentkube's own pure builders wrote, so this peer writes
// the same objects as agentkube does; the owner reference is set here, from the live MCP.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

const fieldOwner = "bench-controller-runtime"

var mcpGVK = schema.GroupVersionKind{Group: "agentkube.io", Version: "v1alpha1", Kind: "MCP"}

func newMCP() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(mcpGVK)
	return u
}

// MCPReconciler applies an MCP's children and reports it Accepted.
type MCPReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder record.EventRecorder
	Children map[string][]map[string]any
}

func (r *MCPReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	mcp := newMCP()
	if err := r.Get(ctx, req.NamespacedName, mcp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mcp.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil
	}
	templates, ok := r.Children[mcp.GetName()]
	if !ok {
		return ctrl.Result{}, fmt.Errorf("MCP %s: no children in the children file", req.NamespacedName)
	}
	for _, template := range templates {
		child := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(template)}
		child.SetNamespace(mcp.GetNamespace())
		if err := controllerutil.SetControllerReference(mcp, child, r.Scheme); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Patch(ctx, child, client.Apply, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			return ctrl.Result{}, fmt.Errorf("apply %s %s: %w", child.GetKind(), child.GetName(), err)
		}
	}

	generation := mcp.GetGeneration()
	observed, _, _ := unstructured.NestedInt64(mcp.Object, "status", "observedGeneration")
	conditions := readConditions(mcp)
	changed := meta.SetStatusCondition(&conditions, metav1.Condition{
		Type:               "Accepted",
		Status:             metav1.ConditionTrue,
		Reason:             "Accepted",
		Message:            "the proxy's children are applied",
		ObservedGeneration: generation,
	})
	if !changed && observed == generation {
		return ctrl.Result{}, nil
	}
	if err := unstructured.SetNestedField(mcp.Object, generation, "status", "observedGeneration"); err != nil {
		return ctrl.Result{}, err
	}
	if err := unstructured.SetNestedSlice(mcp.Object, writeConditions(conditions), "status", "conditions"); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.Status().Update(ctx, mcp); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, err
	}
	if observed != generation {
		r.Recorder.Event(mcp, corev1.EventTypeNormal, "Applied", "Applied the proxy's children")
	}
	return ctrl.Result{}, nil
}

func readConditions(u *unstructured.Unstructured) []metav1.Condition {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var conditions []metav1.Condition
	if data, err := json.Marshal(raw); err == nil {
		_ = json.Unmarshal(data, &conditions)
	}
	return conditions
}

func writeConditions(conditions []metav1.Condition) []any {
	var out []any
	data, _ := json.Marshal(conditions)
	_ = json.Unmarshal(data, &out)
	return out
}

func (r *MCPReconciler) SetupWithManager(mgr ctrl.Manager, workers int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(newMCP()).
		Owns(&corev1.ConfigMap{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&networkingv1.NetworkPolicy{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

func main() {
	var childrenPath, metricsAddr, probeAddr string
	var workers int
	var syncPeriod time.Duration
	flag.StringVar(&childrenPath, "children", "", "JSON file: MCP name -> its children without owner references")
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "where /metrics is served (0: nowhere)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", "127.0.0.1:8081", "where /readyz is served")
	flag.IntVar(&workers, "max-concurrent-reconciles", 4, "MaxConcurrentReconciles of the MCP controller")
	flag.DurationVar(&syncPeriod, "sync-period", 10*time.Hour, "the cache's resync period")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("mcp-peer")

	children := map[string][]map[string]any{}
	data, err := os.ReadFile(childrenPath)
	if err == nil {
		err = json.Unmarshal(data, &children)
	}
	if err != nil {
		log.Error(err, "cannot read the children file", "path", childrenPath)
		os.Exit(1)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		log.Error(err, "scheme")
		os.Exit(1)
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		Cache:                  cache.Options{SyncPeriod: &syncPeriod},
	})
	if err != nil {
		log.Error(err, "cannot make the manager")
		os.Exit(1)
	}
	reconciler := &MCPReconciler{
		Client:   mgr.GetClient(),
		Scheme:   mgr.GetScheme(),
		Recorder: mgr.GetEventRecorderFor("mcp-controller"),
		Children: children,
	}
	if err := reconciler.SetupWithManager(mgr, workers); err != nil {
		log.Error(err, "cannot set up the controller")
		os.Exit(1)
	}
	// Ready once the informers the controller started have listed.
	if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), 50*time.Millisecond)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("caches not synced")
		}
		return nil
	}); err != nil {
		log.Error(err, "readyz")
		os.Exit(1)
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}
